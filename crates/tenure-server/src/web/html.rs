//! HTML building blocks: the escaper every user string goes through, the page layout (one
//! inline stylesheet, no script, no external asset), and small helpers for numbers.

use std::fmt::Write as _;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a query-string or path component.
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = r#"
:root{--fg:#111827;--muted:#6b7280;--line:#e5e7eb;--bg:#f9fafb;--card:#fff;--accent:#2563eb;--red:#dc2626;--yellow:#b45309;--green:#047857;--grey:#9ca3af}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;flex-wrap:wrap;gap:4px 16px;align-items:center;padding:10px 16px;background:#111827;color:#fff}
header a{color:#d1d5db;text-decoration:none;padding:4px 6px;border-radius:4px}header a.on,header a:hover{color:#fff;background:#374151}
header .brand{font-weight:700;color:#fff;margin-right:8px}header form{margin-left:auto}
main{max-width:1200px;margin:0 auto;padding:16px}h1{font-size:22px;margin:4px 0 12px}h2{font-size:16px;margin:20px 0 8px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
.tile{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.tile b{display:block;font-size:20px}.tile small,.muted{color:var(--muted)}.up{color:var(--green)}.down{color:var(--red)}tr.total td{font-weight:600}.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}nav.pages{margin:12px 0}nav.pages a,nav.pages b{padding:4px 8px}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:16px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px;min-width:0}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;background:var(--card)}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}th{font-weight:600;color:#374151}
td.num,th.num{text-align:right}a{color:var(--accent)}td.wrap{white-space:normal;min-width:280px}
.chart{width:100%;height:auto}.chart .grid{stroke:var(--line)}.chart .zero{stroke:#9ca3af}.chart .ax{font-size:11px;fill:var(--muted)}
.legend{display:flex;flex-wrap:wrap;gap:10px;font-size:12px;color:var(--muted)}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:4px;vertical-align:middle}
.red{background:var(--red)}.yellow{background:var(--yellow)}.green{background:var(--green)}.grey{background:var(--grey)}
.sev-urgent,.sev-high{color:var(--red);font-weight:600}.sev-normal{color:var(--yellow)}.sev-low{color:var(--muted)}
form.inline{display:inline-flex;flex-wrap:wrap;gap:6px;align-items:center}input,select,button,textarea{font:inherit;padding:5px 8px;border:1px solid #d1d5db;border-radius:6px;background:#fff}
button,a.button{background:var(--accent);color:#fff;border-color:var(--accent);cursor:pointer}a.button{display:inline-block;padding:6px 12px;border-radius:6px;text-decoration:none}button.plain{background:#fff;color:var(--fg);border-color:#d1d5db}
.filters{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0 12px}.timeline{list-style:none;padding:0;margin:0}.timeline li{padding:6px 0;border-bottom:1px solid var(--line)}
.timeline time{color:var(--muted);margin-right:8px;font-variant-numeric:tabular-nums}.heat td{text-align:center;font-size:12px}.heat th{font-size:12px}
.login{max-width:380px;margin:10vh auto;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:20px}.login input{width:100%;margin:8px 0}
tr.task td{border-bottom:none;padding-bottom:2px}tr.actions td{padding-top:0}.err{color:var(--red)}.pager{margin:10px 0;display:flex;gap:10px}
@media (max-width:600px){main{padding:10px}th,td{padding:5px}h1{font-size:19px}}
"#;

/// The navigation: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/", "Portfolio"),
    ("/accounts", "Accounts"),
    ("/cohorts", "Cohorts"),
    ("/inbox", "Alerts & tasks"),
    ("/team", "Team"),
    ("/renewals", "Renewals"),
    ("/model", "Model"),
    ("/audit", "Audit"),
];

/// A whole page. `body` is HTML already escaped; `csrf` signs the logout form.
pub fn page(title: &str, active: &str, csrf: &str, body: &str) -> String {
    let mut nav = String::new();
    for (path, label) in NAV {
        let _ = write!(
            nav,
            "<a href=\"{path}\"{}>{label}</a>",
            if *path == active { " class=\"on\"" } else { "" }
        );
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><link rel=\"icon\" href=\"data:,\">\
<title>{} · Tenure</title><style>{STYLE}</style></head><body><header><span class=\"brand\">Tenure</span>{nav}\
<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button class=\"plain\">Log out</button></form></header>\
<main>{body}</main></body></html>",
        esc(title),
        esc(csrf)
    )
}

/// The login page (no session yet).
pub fn login(error: Option<&str>, sso: Option<&str>) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><link rel=\"icon\" href=\"data:,\">\
<title>Log in · Tenure</title><style>{STYLE}</style></head><body><div class=\"login\"><h1>Tenure</h1>\
{}{}<form method=\"post\" action=\"/login\"><label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required autofocus>\
<label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required><button id=\"password-login\">Log in</button></form>\
<form method=\"post\" action=\"/login\"><label for=\"key\">Or an API key (read scope)</label><input id=\"key\" name=\"key\" type=\"password\" autocomplete=\"off\" required>\
<button id=\"key-login\">Log in with the key</button></form></div></body></html>",
        error.map_or(String::new(), |e| format!("<p class=\"err\">{}</p>", esc(e))),
        // A link, not a form: the start of single sign-on is a plain navigation.
        sso.map_or(String::new(), |l| format!(
            "<p><a class=\"button\" id=\"sso-login\" href=\"/login/oidc\">{}</a></p>",
            esc(l)
        ))
    )
}

/// A health colour as a dot and its name.
pub fn colour(c: &str) -> String {
    let c = match c {
        "red" | "yellow" | "green" => c,
        _ => "grey",
    };
    format!("<span class=\"dot {c}\"></span>{c}")
}

/// A share as a percentage with no decimals, or a dash.
pub fn pct(x: Option<f64>) -> String {
    x.filter(|v| v.is_finite()).map_or("–".into(), |v| format!("{:.0}%", 100.0 * v))
}

/// A share as a percentage with one decimal, or a dash.
pub fn pct1(x: Option<f64>) -> String {
    x.filter(|v| v.is_finite()).map_or("–".into(), |v| format!("{:.1}%", 100.0 * v))
}

/// Money in major units, grouped by thousands, no decimals.
pub fn money(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let neg = x < 0.0;
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if neg { format!("-{out}") } else { out }
}

/// Short money for axes: 12k, 1.5M.
pub fn money_short(x: f64) -> String {
    let a = x.abs();
    if a >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if a >= 1e3 {
        format!("{:.0}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_content_and_attributes() {
        assert_eq!(
            esc("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(url("a b/ü"), "a%20b%2F%C3%BC");
        assert_eq!(money(1234567.4), "1,234,567");
        assert_eq!(money(-950.0), "-950");
        assert_eq!(pct(Some(0.256)), "26%");
        assert_eq!(pct(None), "–");
        let p = page("<x>", "/", "t\"", "<p>ok</p>");
        assert!(p.contains("<title>&lt;x&gt; · Tenure</title>") && p.contains("value=\"t&quot;\""));
        assert!(!p.contains("<script"), "no script at all");
    }
}
