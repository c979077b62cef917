//! Charts as SVG, rendered on the server: lines (with optional confidence bands), stacked
//! bars that go below the axis for losses, horizontal bars and heatmaps. Every label goes
//! through the HTML escaper; numbers are formatted here, not by the browser.

use super::html::esc;
use std::fmt::Write as _;

const W: f64 = 640.0;
const H: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 36.0;

/// A series of a line chart: name, colour, points (x index, value; `None` breaks the line),
/// and an optional band (low, high) per point.
pub struct Line<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    pub points: Vec<Option<f64>>,
    pub band: Option<Vec<Option<(f64, f64)>>>,
}

/// An axis over `min..max` (0 always in it) in about four nice steps: (low, high, step).
fn axis(min: f64, max: f64) -> (f64, f64, f64) {
    let lo = min.min(0.0);
    let hi = if max > lo { max } else { lo + 1.0 };
    let raw = (hi - lo) / 4.0;
    let p = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * p).find(|s| *s >= raw).unwrap_or(10.0 * p);
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

/// Horizontal grid lines and their labels, every `step` from `lo` to `hi`.
fn grid(
    out: &mut String,
    (lo, hi, step): (f64, f64, f64),
    y: impl Fn(f64) -> f64,
    fmt: fn(f64) -> String,
) {
    let n = ((hi - lo) / step).round() as i64;
    for k in 0..=n {
        let v = lo + step * k as f64;
        let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" class=\"ax\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            esc(&fmt(v)),
            yy = y(v)
        );
    }
}

/// Rounds `max` up to a "nice" axis bound.
fn nice(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= max {
            return m * p;
        }
    }
    10.0 * p
}

fn open(out: &mut String, title: &str) {
    open_as(out, title, "img");
}

/// A chart whose parts are links is a group, not an image: an image has no interactive
/// parts (WCAG: nested interactive controls are not announced).
fn open_as(out: &mut String, title: &str, role: &str) {
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"{role}\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        esc(title)
    );
}

fn x_labels(out: &mut String, labels: &[String], x: impl Fn(usize) -> f64) {
    let step = labels.len().div_ceil(8).max(1);
    for (i, l) in labels.iter().enumerate().step_by(step) {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"ax\">{}</text>",
            x(i),
            H - BOTTOM + 16.0,
            esc(l)
        );
    }
}

fn legend(out: &mut String, items: &[(&str, &str)]) -> String {
    let mut html = String::from("<div class=\"legend\">");
    for (name, colour) in items {
        let _ = write!(html, "<span><i style=\"background:{colour}\"></i>{}</span>", esc(name));
    }
    html.push_str("</div>");
    let _ = out;
    html
}

/// A line chart over `labels` (one per x position), y from `lo` to a nice bound of the data.
pub fn lines(
    title: &str,
    labels: &[String],
    series: &[Line<'_>],
    fmt: fn(f64) -> String,
) -> String {
    let mut out = String::new();
    let values = series.iter().flat_map(|s| {
        s.points
            .iter()
            .flatten()
            .copied()
            .chain(s.band.iter().flatten().flatten().flat_map(|(a, b)| [*a, *b]))
    });
    let (mut lo, mut hi) = (0.0f64, f64::MIN);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi == f64::MIN {
        hi = 1.0;
    }
    let ax = axis(lo, hi);
    let (lo, hi) = (ax.0, ax.1);
    let n = labels.len().max(2);
    let x = |i: usize| LEFT + (W - LEFT - RIGHT) * i as f64 / (n - 1) as f64;
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - (v - lo) / (hi - lo));
    open(&mut out, title);
    grid(&mut out, ax, y, fmt);
    for s in series {
        if let Some(band) = &s.band {
            // The band as one polygon per unbroken run.
            let mut run: Vec<(usize, f64, f64)> = Vec::new();
            let flush = |out: &mut String, run: &mut Vec<(usize, f64, f64)>| {
                if run.len() > 1 {
                    let mut pts: Vec<String> =
                        run.iter().map(|(i, _, h)| format!("{:.1},{:.1}", x(*i), y(*h))).collect();
                    pts.extend(
                        run.iter().rev().map(|(i, l, _)| format!("{:.1},{:.1}", x(*i), y(*l))),
                    );
                    let _ = write!(
                        out,
                        "<polygon points=\"{}\" fill=\"{}\" opacity=\"0.15\"/>",
                        pts.join(" "),
                        s.colour
                    );
                }
                run.clear();
            };
            for (i, b) in band.iter().enumerate() {
                match b {
                    Some((l, h)) => run.push((i, *l, *h)),
                    None => flush(&mut out, &mut run),
                }
            }
            flush(&mut out, &mut run);
        }
        let mut d = String::new();
        let mut pen = false;
        for (i, p) in s.points.iter().enumerate() {
            match p {
                Some(v) => {
                    let _ = write!(d, "{}{:.1},{:.1} ", if pen { "L" } else { "M" }, x(i), y(*v));
                    pen = true;
                }
                None => pen = false,
            }
        }
        let _ = write!(
            out,
            "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"><title>{}</title></path>",
            d.trim_end(),
            s.colour,
            esc(s.name)
        );
    }
    x_labels(&mut out, labels, x);
    out.push_str("</svg>");
    let items: Vec<(&str, &str)> = series.iter().map(|s| (s.name, s.colour)).collect();
    out + &legend(&mut String::new(), &items)
}

/// Stacked bars per label; positive series stack up, negative ones down.
pub fn stacked(
    title: &str,
    labels: &[String],
    series: &[(&str, &str, Vec<f64>)],
    fmt: fn(f64) -> String,
) -> String {
    stacked_linked(title, labels, series, fmt, |_, _| None)
}

/// As [`stacked`], each bar a link to `href(series, label)` when it gives one (an SVG `<a>`:
/// a click-through without a script). The address is escaped here.
pub fn stacked_linked(
    title: &str,
    labels: &[String],
    series: &[(&str, &str, Vec<f64>)],
    fmt: fn(f64) -> String,
    href: impl Fn(usize, usize) -> Option<String>,
) -> String {
    let n = labels.len().max(1);
    let (mut up, mut down) = (vec![0.0f64; n], vec![0.0f64; n]);
    for (_, _, v) in series {
        for (i, x) in v.iter().enumerate().take(n) {
            if *x >= 0.0 {
                up[i] += x;
            } else {
                down[i] += x;
            }
        }
    }
    let ax = axis(down.iter().copied().fold(0.0, f64::min), up.iter().copied().fold(0.0, f64::max));
    let (lo, hi) = (ax.0, ax.1);
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - (v - lo) / (hi - lo));
    let slot = (W - LEFT - RIGHT) / n as f64;
    let x = |i: usize| LEFT + slot * (i as f64 + 0.5);
    let mut out = String::new();
    let linked = (0..series.len()).any(|k| (0..labels.len()).any(|i| href(k, i).is_some()));
    open_as(&mut out, title, if linked { "group" } else { "img" });
    grid(&mut out, ax, y, fmt);
    let bw = (slot * 0.7).max(1.0);
    for (i, label) in labels.iter().enumerate() {
        let (mut top, mut bottom) = (0.0, 0.0);
        for (k, (name, colour, v)) in series.iter().enumerate() {
            let val = v.get(i).copied().unwrap_or(0.0);
            if val == 0.0 {
                continue;
            }
            let (a, b) = if val > 0.0 {
                let r = (top, top + val);
                top += val;
                r
            } else {
                let r = (bottom + val, bottom);
                bottom += val;
                r
            };
            let link = href(k, i);
            if let Some(h) = &link {
                let _ = write!(
                    out,
                    "<a href=\"{}\" aria-label=\"{}: {} {}\">",
                    esc(h),
                    esc(name),
                    esc(label),
                    esc(&fmt(val.abs()))
                );
            }
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{}: {} {}</title></rect>",
                x(i) - bw / 2.0,
                y(b),
                (y(a) - y(b)).max(0.5),
                esc(label),
                esc(name),
                esc(&fmt(val))
            );
            if link.is_some() {
                out.push_str("</a>");
            }
        }
    }
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{z:.1}\" y2=\"{z:.1}\" class=\"zero\"/>",
        W - RIGHT,
        z = y(0.0)
    );
    x_labels(&mut out, labels, x);
    out.push_str("</svg>");
    let items: Vec<(&str, &str)> = series.iter().map(|(n, c, _)| (*n, *c)).collect();
    out + &legend(&mut String::new(), &items)
}

/// Horizontal bars: label, value, colour; the value printed beside each bar.
pub fn hbars(title: &str, items: &[(String, f64, &str)], fmt: fn(f64) -> String) -> String {
    let max = nice(items.iter().map(|i| i.1).fold(0.0, f64::max));
    let row = 22.0;
    let h = row * items.len().max(1) as f64 + 8.0;
    let mut out = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {h}\" role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        esc(title)
    );
    let left = 140.0;
    for (k, (label, v, colour)) in items.iter().enumerate() {
        let yy = 4.0 + row * k as f64;
        let w = (W - left - 90.0) * v / max;
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" class=\"ax\">{}</text><rect x=\"{left}\" y=\"{yy:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"ax\">{}</text>",
            left - 6.0,
            yy + 14.0,
            esc(label),
            w.max(0.0),
            row - 6.0,
            left + w.max(0.0) + 6.0,
            yy + 14.0,
            esc(&fmt(*v))
        );
    }
    out.push_str("</svg>");
    out
}

/// A heatmap table: one row per label, cells shaded by value in [0, 1].
pub fn heatmap(
    columns: &[String],
    rows: &[(String, Vec<Option<f64>>)],
    fmt: fn(f64) -> String,
) -> String {
    let mut out = String::from("<div class=\"scroll\"><table class=\"heat\"><thead><tr><th></th>");
    for c in columns {
        let _ = write!(out, "<th>{}</th>", esc(c));
    }
    out.push_str("</tr></thead><tbody>");
    for (label, cells) in rows {
        let _ = write!(out, "<tr><th>{}</th>", esc(label));
        for c in cells {
            match c {
                Some(v) => {
                    let a = v.clamp(0.0, 1.0);
                    // Dark text on a blue at most 80% opaque over white: a contrast of at
                    // least 4.9:1 (WCAG AA asks 4.5:1) at every shade; white text would fall
                    // short from about 80% to 95% opacity.
                    let _ = write!(
                        out,
                        "<td style=\"background:rgba(37,99,235,{:.2});color:#111827\">{}</td>",
                        0.06 + 0.74 * a,
                        esc(&fmt(*v))
                    );
                }
                None => out.push_str("<td></td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_nice_and_labels_escaped() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(7.3), 10.0);
        assert_eq!(nice(1234.0), 2000.0);
        assert_eq!(nice(0.42), 0.5);
        assert_eq!(axis(-20_000.0, 50_000.0), (-20_000.0, 60_000.0, 20_000.0));
        assert_eq!(axis(0.0, 1.03), (0.0, 1.5, 0.5));
        assert_eq!(axis(0.0, 0.0), (0.0, 1.0, 0.25));
        let svg = lines(
            "<t>",
            &["<jan>".to_string(), "feb".to_string()],
            &[Line { name: "a&b", colour: "#123", points: vec![Some(1.0), None], band: None }],
            |v| format!("{v}"),
        );
        assert!(
            svg.contains("aria-label=\"&lt;t&gt;\"")
                && svg.contains("&lt;jan&gt;")
                && svg.contains("a&amp;b")
        );
        assert!(!svg.contains("<jan>") && !svg.contains("<t>"));
    }

    #[test]
    fn losses_go_below_the_axis() {
        let svg = stacked(
            "m",
            &["jan".into()],
            &[("new", "#0a0", vec![100.0]), ("churn", "#a00", vec![-50.0])],
            |v| format!("{v}"),
        );
        // Two bars, the loss under the zero line.
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("churn -50"), "{svg}");
        assert!(!svg.contains("<a ") && svg.contains("role=\"img\""));
        // Linked: each bar in its own <a> named for screen readers, the address escaped; a
        // chart of links is a group, not an image.
        let svg = stacked_linked(
            "m",
            &["jan".into(), "feb".into()],
            &[("new", "#0a0", vec![100.0, 0.0]), ("churn", "#a00", vec![-50.0, -5.0])],
            |v| format!("{v}"),
            |k, i| Some(format!("/explain?kpi={k}&i={i}\"")),
        );
        assert_eq!(svg.matches("<a href=").count(), 3, "{svg}");
        assert!(
            svg.contains(
                "<a href=\"/explain?kpi=1&amp;i=1&quot;\" aria-label=\"churn: feb 5\"><rect"
            ),
            "{svg}"
        );
        assert!(svg.contains("role=\"group\""), "{svg}");
        assert_eq!(svg.matches("</a>").count(), 3);
    }
}
