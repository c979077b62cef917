//! The latent model of one synthetic customer and the events it emits.
//!
//! Each account owns three independent random streams derived from (seed, index):
//! `lr` drives the latent state and every commercial decision (health, churn, seat
//! changes, active users); `or` only shapes observations (tickets, surveys, names, exact
//! times); `ur` only shapes individual usage events. Because observation draws never
//! touch `lr`, a sizing pass that skips all emission follows exactly the same latent path
//! as the real pass; that is what lets `usage_events` be hit by scaling the per-user rate.

use std::fmt::Write as _;

use crate::out::{Emitter, Kind, TRUTH, TRUTH_ACCOUNTS, V};
use crate::rng::{Rng, stream_key};
use crate::time::{DAY, HOUR, add_months, month_label, month_start, weekday};
use crate::{OutputFormat, SimConfig};

/// One product feature of the simulated product. `advanced` features are the upsell
/// signal; `min_plan` is the lowest plan (0 starter, 1 growth, 2 enterprise) that
/// includes it: usage below that plan is "use outside subscription".
#[derive(Clone, Copy, Debug)]
pub struct Feature {
    pub name: &'static str,
    pub event: &'static str,
    pub advanced: bool,
    pub min_plan: usize,
}

const fn feat(name: &'static str, event: &'static str, advanced: bool, min_plan: usize) -> Feature {
    Feature { name, event, advanced, min_plan }
}

/// Feature catalogue; basic features first (ordered by popularity), then advanced.
pub const FEATURES: [Feature; 12] = [
    feat("dashboards", "view_dashboard", false, 0),
    feat("reports", "run_report", false, 0),
    feat("search", "search", false, 0),
    feat("export", "export_data", false, 0),
    feat("alerts", "create_alert", false, 0),
    feat("comments", "add_comment", false, 0),
    feat("automations", "run_automation", true, 1),
    feat("integrations", "sync_integration", true, 1),
    feat("custom_fields", "edit_custom_field", true, 1),
    feat("api", "api_call", true, 2),
    feat("workflows", "run_workflow", true, 2),
    feat("forecasting", "run_forecast", true, 2),
];
const N_BASIC: usize = 6;
const LOGIN: u8 = u8::MAX;

pub const SEGMENTS: [&str; 3] = ["smb", "mid_market", "enterprise"];
pub const PLANS: [&str; 3] = ["starter", "growth", "enterprise"];
/// List price per seat per month, minor units.
const SEAT_PRICE: [i64; 3] = [1_500, 3_500, 7_000];
const REGIONS: [&str; 4] = ["na", "emea", "apac", "latam"];
/// Offset from local business time to UTC per region, seconds.
const REGION_TZ: [i64; 4] = [5 * HOUR, -HOUR, -8 * HOUR, 3 * HOUR];
const INDUSTRIES: [&str; 9] = [
    "software",
    "financial_services",
    "healthcare",
    "retail",
    "manufacturing",
    "education",
    "media",
    "logistics",
    "professional_services",
];
const CHANNELS: [&str; 3] = ["self_serve", "sales", "partner"];
const CSMS: [&[&str]; 3] = [
    &["Maya Chen", "Leo Park"],
    &["Ana Souza", "Tom Becker", "Priya Nair"],
    &["Grace Okafor", "David Levy", "Sofia Rossi"],
];
const FIRST: [&str; 20] = [
    "Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn",
    "Noah", "Emma", "Liam", "Olivia", "Lucas", "Mia", "Ethan", "Zoe", "Omar", "Hana",
];
const LAST: [&str; 20] = [
    "Smith", "Garcia", "Müller", "Rossi", "Kim", "Patel", "Nguyen", "Silva", "Johnson", "Brown",
    "Martin", "Lopez", "Wilson", "Dubois", "Tanaka", "Novak", "Larsen", "Costa", "Ahmed",
    "Schmidt",
];
const COMPANY_A: [&str; 16] = [
    "Blue", "North", "Bright", "Silver", "Rapid", "Green", "Iron", "Clear", "Nimbus", "Atlas",
    "Summit", "Harbor", "Pioneer", "Vertex", "Lumen", "Cedar",
];
const COMPANY_B: [&str; 16] = [
    "Labs",
    "Systems",
    "Works",
    "Logistics",
    "Health",
    "Retail",
    "Analytics",
    "Partners",
    "Foods",
    "Energy",
    "Media",
    "Capital",
    "Robotics",
    "Learning",
    "Studios",
    "Networks",
];
const CAUSES: [&str; 5] = ["low_adoption", "champion_left", "support_pain", "price", "detractor"];
/// Cost model per segment (minor units, USD): acquisition cost per new logo, retention
/// cost per live account-month, baseline service cost per live account-month.
const CAC: [i64; 3] = [120_000, 900_000, 4_000_000];
const CRC: [i64; 3] = [2_000, 18_000, 90_000];
const SVC: [i64; 3] = [500, 4_000, 20_000];

/// Everything shared by all accounts: calendar, company-wide shocks, usage scaling.
pub struct World {
    pub n: u64,
    pub months: u32,
    pub fmt: OutputFormat,
    seed: u64,
    pub month_ts: Vec<i64>,
    pub horizon: i64,
    month_labels: Vec<String>,
    start_cdf: Vec<f64>,
    /// Months with a product defect wave (a bad release hitting many accounts).
    defect_wave: Vec<bool>,
    /// Month of the company-wide list price increase for monthly plans.
    price_rise: Option<u32>,
    /// Multiplier on the natural usage rate (set by the sizing pass).
    pub usage_scale: f64,
}

impl World {
    pub fn new(cfg: &SimConfig) -> Self {
        let (sy, sm) = cfg.start;
        let months = cfg.months;
        let month_ts: Vec<i64> = (0..=i64::from(months)).map(|k| month_start(sy, sm, k)).collect();
        let month_labels = (0..i64::from(months)).map(|k| month_label(sy, sm, k)).collect();
        // New logos per month grow 3% a month on top of an opening base of customers
        // acquired in month 0; account ids are assigned in acquisition order.
        let mut w: Vec<f64> = (0..months).map(|m| 1.03f64.powi(m as i32)).collect();
        w[0] += 6.0;
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        let start_cdf = w
            .iter()
            .map(|x| {
                acc += x / total;
                acc
            })
            .collect();
        let mut g = Rng::new(stream_key(cfg.seed, u64::MAX, 7));
        let defect_wave = (0..months).map(|m| m > 0 && g.chance(1.0 / 9.0)).collect();
        let price_rise =
            (months >= 12).then(|| (months / 2) as i64 + g.range(-2, 3)).map(|m| m as u32);
        Self {
            n: cfg.accounts,
            months,
            fmt: cfg.format,
            seed: cfg.seed,
            horizon: month_ts[months as usize],
            month_ts,
            month_labels,
            start_cdf,
            defect_wave,
            price_rise,
            usage_scale: 1.0,
        }
    }

    fn start_month(&self, idx: u64) -> u32 {
        let u = (idx as f64 + 0.5) / self.n as f64;
        (self.start_cdf.partition_point(|c| *c < u) as u32).min(self.months - 1)
    }

    pub fn month_of(&self, ts: i64) -> u32 {
        (self.month_ts.partition_point(|t| *t <= ts) as u32).saturating_sub(1)
    }
}

/// Company-level aggregates collected while generating, turned into `cost` events.
pub struct Agg {
    pub new_by_seg: Vec<[i64; 3]>,
    pub live_by_seg: Vec<[i64; 3]>,
    pub ticket_cost: Vec<i64>,
}

impl Agg {
    pub fn new(months: u32) -> Self {
        let m = months as usize;
        Self { new_by_seg: vec![[0; 3]; m], live_by_seg: vec![[0; 3]; m], ticket_cost: vec![0; m] }
    }

    pub fn add(&mut self, o: &Agg) {
        for (a, b) in self.new_by_seg.iter_mut().zip(&o.new_by_seg) {
            (0..3).for_each(|s| a[s] += b[s]);
        }
        for (a, b) in self.live_by_seg.iter_mut().zip(&o.live_by_seg) {
            (0..3).for_each(|s| a[s] += b[s]);
        }
        for (a, b) in self.ticket_cost.iter_mut().zip(&o.ticket_cost) {
            *a += b;
        }
    }
}

pub struct ChunkOut {
    pub bufs: Vec<Vec<u8>>,
    pub counts: [u64; 16],
    pub agg: Agg,
    pub accounts: u64,
}

/// Generate accounts `lo..hi` with full output.
pub fn run_chunk(w: &World, lo: u64, hi: u64) -> ChunkOut {
    let mut em = Emitter::new(true, w.fmt);
    let mut agg = Agg::new(w.months);
    for idx in lo..hi {
        Acct::new(w, idx).run(&mut em, &mut agg);
        em.end_account();
    }
    ChunkOut { bufs: em.bufs, counts: em.counts, agg, accounts: hi - lo }
}

/// Sizing pass: expected number of usage events at scale 1 for accounts `lo..hi`.
pub fn chunk_usage_weight(w: &World, lo: u64, hi: u64) -> f64 {
    let mut em = Emitter::new(false, w.fmt);
    let mut agg = Agg::new(w.months);
    (lo..hi).map(|idx| Acct::new(w, idx).run(&mut em, &mut agg)).sum()
}

/// Company-level `cost` events, one per category per month.
pub fn emit_costs(w: &World, agg: &Agg, em: &mut Emitter) {
    let mut g = Rng::new(stream_key(w.seed, u64::MAX, 11));
    for m in 0..w.months as usize {
        let (ps, pe) = (w.month_ts[m], w.month_ts[m + 1]);
        let noise = |g: &mut Rng, v: i64| (v as f64 * g.uniform(0.9, 1.1)).round() as i64;
        let acq: i64 = (0..3).map(|s| agg.new_by_seg[m][s] * CAC[s]).sum();
        let ret: i64 = (0..3).map(|s| agg.live_by_seg[m][s] * CRC[s]).sum();
        let svc: i64 =
            agg.ticket_cost[m] + (0..3).map(|s| agg.live_by_seg[m][s] * SVC[s]).sum::<i64>();
        for (cat, v) in [("acquisition", acq), ("retention", ret), ("service", svc)] {
            let v = noise(&mut g, v);
            if v > 0 {
                em.emit(Kind::Cost, ps, &[V::S(cat), V::M(v), V::S("USD"), V::T(ps), V::T(pe)]);
            }
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// True monthly churn probability of a month-to-month customer: logistic in health.
pub fn monthly_churn_p(h: f64, seg: usize) -> f64 {
    sigmoid(-0.56 - 5.5 * h + [0.0, -0.4, -0.8][seg])
}

/// True probability that an annual contract is not renewed at its term end.
pub fn nonrenewal_p(h: f64, seg: usize) -> f64 {
    sigmoid(1.48 - 5.6 * h + [0.0, -0.2, -0.5][seg])
}

/// A business-hours timestamp in [lo, hi) (local 8-19h, weekends rarer), falling back
/// to uniform when the window is too short to find one.
fn biz_ts(r: &mut Rng, lo: i64, hi: i64, tz: i64) -> i64 {
    let span = hi - lo;
    if span <= 1 {
        return lo;
    }
    for _ in 0..8 {
        let t = lo + r.below(span as u64) as i64;
        if weekday(t - tz) >= 5 && !r.chance(0.2) {
            continue;
        }
        let local_day = (t - tz).div_euclid(DAY) * DAY;
        let tod =
            ((13.5 + 2.6 * r.normal()).clamp(6.0, 22.0) * HOUR as f64) as i64 + r.range(0, 60);
        let t2 = local_day + tod + tz;
        if t2 >= lo && t2 < hi {
            return t2;
        }
    }
    lo + r.below(span as u64) as i64
}

struct Contact {
    id: String,
    name: String,
    email: String,
    role: &'static str,
    active: bool,
}

struct Line {
    id: String,
    product: &'static str,
    kind: &'static str,
    plan: &'static str,
    qty: i64,
    /// Price per unit per billing interval, minor units.
    unit: i64,
    annual: bool,
    term_start: i64,
    term_end: i64,
}

impl Line {
    fn amount(&self) -> i64 {
        self.unit * self.qty
    }
}

struct Acct<'w> {
    w: &'w World,
    id: String,
    num: String,
    seg: usize,
    region: usize,
    plan: usize,
    csm: Option<&'static str>,
    currency: &'static str,
    lr: Rng,
    or: Rng,
    ur: Rng,
    // latent health components (logit scale)
    seg_mean: f64,
    b: f64,
    noise: f64,
    champ_pen: f64,
    support_pen: f64,
    price_pen: f64,
    adopt_pen: f64,
    onb_ok: bool,
    onb_months: f64,
    h: f64,
    champ_replace_at: Option<u32>,
    price_announced: bool,
    price_change_pending: bool,
    // commercial state
    m0: u32,
    cur_start_month: u32,
    cur_start_ts: i64,
    live: bool,
    reactivate_at: Option<u32>,
    lines: Vec<Line>,
    next_bill: i64,
    paused_until: Option<u32>,
    last_sub_ts: i64,
    active_users: i64,
    n_subs: u32,
    n_inv: u32,
    n_tickets: u32,
    n_obj: u32,
    n_cr: u32,
    contacts: Vec<Contact>,
    strategic: i64,
    milestones: Vec<(i64, &'static str)>,
    objectives: Vec<(u32, String)>,
    requests: Vec<(u32, String, &'static str)>,
    first_churn: Option<(i64, &'static str)>,
    reactivated_at: Option<i64>,
    orig_start: i64,
    orig_plan: usize,
    // usage
    last_usage_ts: i64,
    user_ids: Vec<String>,
    tmp: Vec<(i64, u32, u8, u16)>,
    weight: f64,
    line_buf: String,
}

impl<'w> Acct<'w> {
    fn new(w: &'w World, idx: u64) -> Self {
        let mut lr = Rng::new(stream_key(w.seed, idx, 1));
        let or = Rng::new(stream_key(w.seed, idx, 2));
        let ur = Rng::new(stream_key(w.seed, idx, 3));
        let seg = lr.weighted(&[0.70, 0.22, 0.08]);
        let region = lr.weighted(&[0.50, 0.30, 0.14, 0.06]);
        let plan = lr.weighted(&[[0.70, 0.30, 0.0], [0.15, 0.60, 0.25], [0.0, 0.15, 0.85]][seg]);
        let seg_mean = [1.1, 1.3, 1.5][seg];
        let b = seg_mean + 0.7 * lr.normal();
        let num = format!("{:06}", idx + 1);
        Self {
            w,
            id: format!("acc-{num}"),
            num,
            seg,
            region,
            plan,
            csm: None,
            currency: "USD",
            lr,
            or,
            ur,
            seg_mean,
            b,
            noise: 0.0,
            champ_pen: 0.0,
            support_pen: 0.0,
            price_pen: 0.0,
            adopt_pen: -0.9,
            onb_ok: true,
            onb_months: 1.0,
            h: 0.5,
            champ_replace_at: None,
            price_announced: false,
            price_change_pending: false,
            m0: w.start_month(idx),
            cur_start_month: 0,
            cur_start_ts: 0,
            live: true,
            reactivate_at: None,
            lines: Vec::new(),
            next_bill: 0,
            paused_until: None,
            last_sub_ts: i64::MIN,
            active_users: 0,
            n_subs: 0,
            n_inv: 0,
            n_tickets: 0,
            n_obj: 0,
            n_cr: 0,
            contacts: Vec::new(),
            strategic: 3,
            milestones: Vec::new(),
            objectives: Vec::new(),
            requests: Vec::new(),
            first_churn: None,
            reactivated_at: None,
            orig_start: 0,
            orig_plan: plan,
            last_usage_ts: i64::MIN,
            user_ids: Vec::new(),
            tmp: Vec::new(),
            weight: 0.0,
            line_buf: String::new(),
        }
    }

    fn tz(&self) -> i64 {
        REGION_TZ[self.region]
    }

    fn health_x(&self) -> f64 {
        self.b + self.adopt_pen + self.champ_pen + self.support_pen + self.price_pen + self.noise
    }

    /// The latent component pulling health down the most ("none" when nothing does).
    fn cause(&self) -> &'static str {
        let comps = [
            self.adopt_pen + (self.b - self.seg_mean).min(0.0),
            self.champ_pen,
            self.support_pen,
            self.price_pen,
            self.noise.min(0.0),
        ];
        let (i, v) = comps
            .iter()
            .enumerate()
            .fold((0, f64::INFINITY), |a, (i, v)| if *v < a.1 { (i, *v) } else { a });
        if v > -0.2 { "none" } else { CAUSES[i] }
    }

    /// Runs the account over the whole history; returns its natural usage weight.
    fn run(mut self, em: &mut Emitter, agg: &mut Agg) -> f64 {
        self.start(em, agg);
        for m in self.m0..self.w.months {
            let (ms, me) = (self.w.month_ts[m as usize], self.w.month_ts[m as usize + 1]);
            if !self.live {
                if self.reactivate_at != Some(m) {
                    continue;
                }
                self.reactivate(em, ms);
            } else if m > self.m0 {
                self.step_latent(em, m, ms, me);
            }
            self.month(em, agg, m, ms, me);
        }
        self.finish(em);
        self.weight
    }

    fn contact_vals(&self, i: usize) -> [V<'_>; 6] {
        let c = &self.contacts[i];
        [
            V::S(&self.id),
            V::S(&c.id),
            V::S(&c.email),
            V::S(&c.name),
            V::S(c.role),
            V::S(if c.active { "active" } else { "left" }),
        ]
    }

    fn add_contact(&mut self, em: &mut Emitter, role: &'static str, ts: i64, domain: &str) {
        let first = *self.or.pick(&FIRST);
        let last = *self.or.pick(&LAST);
        let id = format!("c-{}-{}", self.num, self.contacts.len() + 1);
        let email = format!(
            "{}.{}{}@{domain}",
            first.to_lowercase(),
            last.to_lowercase().replace('ü', "ue"),
            self.contacts.len() + 1
        );
        self.contacts.push(Contact {
            id,
            name: format!("{first} {last}"),
            email,
            role,
            active: true,
        });
        let vals = self.contact_vals(self.contacts.len() - 1);
        em.emit(Kind::Contact, ts, &vals);
    }

    fn domain(&self) -> String {
        format!("{}.example", self.id)
    }

    fn emit_account(
        &mut self,
        em: &mut Emitter,
        ts: i64,
        name: &str,
        industry: &str,
        channel: &str,
        employees: i64,
    ) {
        em.emit(
            Kind::Account,
            ts,
            &[
                V::S(&self.id),
                V::S(name),
                V::S(SEGMENTS[self.seg]),
                V::S(REGIONS[self.region]),
                V::S(industry),
                V::S(channel),
                self.csm.map_or(V::N, V::S),
                V::S(PLANS[self.plan]),
                V::S("platform"),
                V::I(employees),
            ],
        );
    }

    fn emit_sub(
        &mut self,
        em: &mut Emitter,
        li: usize,
        ts: i64,
        status: &str,
        reason: Option<&str>,
        cancel_at: Option<i64>,
    ) {
        self.last_sub_ts = self.last_sub_ts.max(ts);
        let l = &self.lines[li];
        em.emit(
            Kind::Subscription,
            ts,
            &[
                V::S(&self.id),
                V::S(&l.id),
                V::S(l.product),
                V::S(l.plan),
                V::S(l.kind),
                V::I(l.qty),
                V::M(l.amount()),
                V::S(self.currency),
                V::S(if l.annual { "year" } else { "month" }),
                V::S(status),
                if l.annual { V::T(l.term_start) } else { V::N },
                if l.annual { V::T(l.term_end) } else { V::N },
                reason.map_or(V::N, V::S),
                cancel_at.map_or(V::N, V::T),
            ],
        );
    }

    fn new_invoice_id(&mut self) -> String {
        self.n_inv += 1;
        format!("inv-{}-{}", self.num, self.n_inv)
    }

    fn emit_invoice(
        &self,
        em: &mut Emitter,
        id: &str,
        ts: i64,
        amount: i64,
        status: &str,
        period: (i64, i64),
    ) {
        let (ps, pe) = period;
        if ts >= self.w.horizon {
            return;
        }
        em.emit(
            Kind::Invoice,
            ts,
            &[
                V::S(&self.id),
                V::S(id),
                V::M(amount),
                V::S(self.currency),
                V::S(status),
                V::T(ps),
                V::T(pe),
            ],
        );
    }

    /// A paid invoice, occasionally refunded later.
    fn bill(&mut self, em: &mut Emitter, ts: i64, amount: i64, ps: i64, pe: i64) {
        let id = self.new_invoice_id();
        self.emit_invoice(em, &id, ts, amount, "paid", (ps, pe));
        if self.or.chance(0.003) {
            let t = ts + self.or.range(3 * DAY, 20 * DAY);
            self.emit_invoice(em, &id, t, amount, "refunded", (ps, pe));
        }
    }

    fn new_sub_id(&mut self) -> String {
        self.n_subs += 1;
        format!("sub-{}-{}", self.num, self.n_subs)
    }

    /// Per-interval unit price for a per-seat monthly list price (annual: 15% discount).
    fn unit_price(per_month: i64, annual: bool) -> i64 {
        if annual { per_month * 12 * 85 / 100 } else { per_month }
    }

    fn start(&mut self, em: &mut Emitter, agg: &mut Agg) {
        let w = self.w;
        let seg = self.seg;
        let lr = &mut self.lr;
        let industry = *lr.pick(&INDUSTRIES);
        let channel =
            CHANNELS[lr.weighted(&[[0.6, 0.25, 0.15], [0.0, 0.7, 0.3], [0.0, 0.9, 0.1]][seg])];
        self.csm = if seg > 0 || (channel != "self_serve" && lr.chance(0.5)) {
            Some(*lr.pick(CSMS[seg]))
        } else {
            None
        };
        self.currency = if self.region == 1 {
            ["EUR", "GBP", "USD"][lr.weighted(&[0.5, 0.25, 0.25])]
        } else {
            "USD"
        };
        let (med, sd, lo, hi) =
            [(5.0f64, 0.6, 1.0, 60.0), (35.0, 0.5, 10.0, 400.0), (180.0, 0.6, 50.0, 3000.0)][seg];
        let seats = (med.ln() + sd * lr.normal()).exp().round().clamp(lo, hi) as i64;
        let (emed, elo, ehi) =
            [(40.0f64, 5.0, 200.0), (600.0, 200.0, 2000.0), (8000.0, 2000.0, 60000.0)][seg];
        let employees = (emed.ln() + 0.7 * lr.normal()).exp().round().clamp(elo, ehi) as i64;
        let annual = lr.chance([0.15, 0.75, 0.95][seg]);
        let trial = lr.chance(if channel == "self_serve" { 0.6 } else { 0.1 });
        // Onboarding: duration (months) and whether it ever completes drive early adoption.
        self.onb_ok = !lr.chance([0.15, 0.12, 0.10][seg]);
        self.onb_months = [1.0, 2.0, 3.5][seg] * lr.uniform(0.6, 1.6);
        self.strategic = ([2, 3, 4][seg] + lr.range(-1, 2)).clamp(1, 5);
        let day = if trial { lr.range(1, 15) } else { lr.range(1, 29) };
        let ms = w.month_ts[self.m0 as usize];
        let start_ts = ms + (day - 1) * DAY + lr.range(8 * HOUR, 18 * HOUR) + self.tz();
        let conv = if trial { start_ts + 14 * DAY } else { start_ts };
        self.cur_start_month = self.m0;
        self.cur_start_ts = start_ts;
        self.orig_start = start_ts;
        agg.new_by_seg[self.m0 as usize][seg] += 1;

        let name = format!("{} {}", self.or.pick(&COMPANY_A), self.or.pick(&COMPANY_B));
        self.emit_account(em, start_ts, &name, industry, channel, employees);
        let domain = self.domain();
        let mut roles: Vec<&'static str> = vec!["champion"];
        if seg > 0 || self.or.chance(0.5) {
            roles.push("admin");
        }
        if seg > 0 || self.or.chance(0.5) {
            roles.push("decision_maker");
        }
        if self.or.chance([0.1, 0.7, 0.95][seg]) {
            roles.push("executive_sponsor");
        }
        if seg == 2 && self.or.chance(0.5) {
            roles.push("influencer");
        }
        let users = (1 + self.or.below(3) as i64 + 2 * seg as i64).min(seats);
        roles.extend(std::iter::repeat_n("end_user", users as usize));
        for (k, role) in roles.into_iter().enumerate() {
            self.add_contact(em, role, start_ts + 60 * k as i64, &domain);
        }

        let id = self.new_sub_id();
        let unit = Self::unit_price(SEAT_PRICE[self.plan], annual);
        self.lines.push(Line {
            id,
            product: "platform",
            kind: "product",
            plan: PLANS[self.plan],
            qty: seats,
            unit,
            annual,
            term_start: conv,
            term_end: add_months(conv, 12),
        });
        if trial {
            self.emit_sub(em, 0, start_ts, "trialing", None, None);
        }
        self.emit_sub(em, 0, conv, "active", None, None);
        let pe = if annual { self.lines[0].term_end } else { add_months(conv, 1) };
        let amount = self.lines[0].amount();
        self.bill(em, conv, amount, conv, pe);
        self.next_bill = add_months(conv, 1);

        // Onboarding milestones (observations of the latent onboarding outcome).
        let o = &mut self.or;
        let month = 30.4 * DAY as f64;
        let mut ms_list = vec![(start_ts + o.range(HOUR, 3 * DAY), "onboarding_started")];
        let first_value = self.onb_months * month * o.uniform(0.4, 0.8);
        if self.onb_ok || o.chance(0.35) {
            ms_list.push((start_ts + first_value as i64, "first_value"));
        }
        if self.onb_ok {
            ms_list.push((start_ts + (self.onb_months * month) as i64, "onboarding_completed"));
            if o.chance(0.6) {
                ms_list.push((
                    start_ts + (self.onb_months * month * o.uniform(0.7, 1.5)) as i64,
                    "training_completed",
                ));
            }
        }
        self.milestones = ms_list;
        self.h = sigmoid(self.health_x());
    }

    fn step_latent(&mut self, em: &mut Emitter, m: u32, ms: i64, me: i64) {
        let hprev = self.h;
        self.noise = 0.75 * self.noise + 0.3 * self.lr.normal();
        let since = f64::from(m - self.m0) + 0.5;
        self.adopt_pen = if self.onb_ok {
            -0.9 * (1.0 - since / self.onb_months).max(0.0)
        } else {
            -(0.98f64.powf(since))
        };
        // Champion: departure (likelier when the account is unhappy) and later replacement.
        match self.champ_replace_at {
            Some(at) if m >= at => {
                self.champ_replace_at = None;
                let tz = self.tz();
                let ts = biz_ts(&mut self.or, ms, me, tz);
                let domain = self.domain();
                self.add_contact(em, "champion", ts, &domain);
            }
            Some(_) => self.champ_pen = -1.1,
            None => self.champ_pen *= 0.75,
        }
        if self.champ_replace_at.is_none() && self.lr.chance(0.008 + 0.025 * (1.0 - hprev)) {
            self.champ_pen = -1.1;
            self.champ_replace_at = Some(m + 1 + self.lr.below(4) as u32);
            self.depart(em, "champion", ms, me);
        }
        for role in ["executive_sponsor", "admin"] {
            if self.lr.chance(0.004) && self.depart(em, role, ms, me) {
                self.champ_pen = self.champ_pen.min(-0.4);
                let tz = self.tz();
                let ts = biz_ts(&mut self.or, me, me + 25 * DAY, tz);
                if ts < self.w.horizon {
                    let domain = self.domain();
                    self.add_contact(em, role, ts, &domain);
                }
            }
        }
        self.support_pen *= 0.6;
        if self.w.defect_wave[m as usize] && self.lr.chance(0.35) || self.lr.chance(0.01) {
            self.support_pen = -1.0;
        }
        self.price_pen *= 0.85;
        let main = &self.lines[0];
        if !main.annual && self.w.price_rise == Some(m) {
            self.price_pen = -0.8;
            self.price_change_pending = true;
        }
        if main.annual
            && !self.price_announced
            && self.w.month_of(main.term_end) == m + 2
            && self.lr.chance(0.3)
        {
            self.price_pen = -0.8;
            self.price_announced = true;
        }
        self.h = sigmoid(self.health_x());
    }

    /// Marks the first active contact with `role` as departed; false if there was none.
    fn depart(&mut self, em: &mut Emitter, role: &str, ms: i64, me: i64) -> bool {
        let Some(i) = self.contacts.iter().position(|c| c.active && c.role == role) else {
            return false;
        };
        self.contacts[i].active = false;
        let tz = self.tz();
        let ts = biz_ts(&mut self.or, ms, me, tz);
        let vals = self.contact_vals(i);
        em.emit(Kind::Contact, ts, &vals);
        true
    }

    fn month(&mut self, em: &mut Emitter, agg: &mut Agg, m: u32, ms: i64, me: i64) {
        let h = self.h;
        let lo = if m == self.cur_start_month { self.cur_start_ts } else { ms };
        let annual = self.lines[0].annual;
        let mut p = 0.0;
        let mut churn: Option<(i64, bool)> = None;
        let mut renew_at = None;
        if !annual {
            if m > self.cur_start_month && self.paused_until.is_none() {
                p = monthly_churn_p(h, self.seg);
                if self.lr.chance(p) {
                    let ann = self.next_bill;
                    // A fifth of lost monthly customers go through a failed payment first.
                    let invol = self.lr.chance(0.2);
                    let stop = if invol { ann + (10 * DAY).min((me - ann) / 2) } else { ann };
                    churn = Some((stop, invol));
                }
            }
        } else {
            let te = self.lines[0].term_end;
            if te >= ms && te < me {
                p = nonrenewal_p(h, self.seg);
                if self.lr.chance(p) {
                    churn = Some((te, false));
                } else {
                    renew_at = Some(te);
                }
            }
        }
        agg.live_by_seg[m as usize][self.seg] += 1;
        let cause = if churn.is_some() || h < 0.5 { self.cause() } else { "none" };
        if em.on {
            self.line_buf.clear();
            let _ = writeln!(
                self.line_buf,
                "{},{},{:.4},{:.5},{},{}",
                self.id,
                self.w.month_labels[m as usize],
                h,
                p,
                u8::from(churn.is_some()),
                cause
            );
            em.bufs[TRUTH].extend_from_slice(self.line_buf.as_bytes());
        }
        let stop = churn.map_or(me, |c| c.0);
        self.usage(em, lo, stop, ms, me, h);
        if em.on {
            self.observe(em, agg, m, lo, stop, h);
        }
        if !annual && m > self.cur_start_month {
            self.monthly_billing(em, m, churn);
        }
        if let Some(te) = renew_at {
            self.renew(em, te, h);
        }
        match churn {
            Some((stop, invol)) => self.churn(em, m, ms, stop, invol, cause),
            None if renew_at.is_none() && self.paused_until.is_none() => {
                self.commercial(em, lo, ms, me, h)
            }
            None => {}
        }
    }

    fn usage(&mut self, em: &mut Emitter, lo: i64, hi: i64, ms: i64, me: i64, h: f64) {
        let seats = self.lines[0].qty;
        let mut util = (0.08 + 0.85 * h + 0.05 * self.lr.normal()).clamp(0.02, 1.0);
        if self.paused_until.is_some() {
            util *= 0.1;
        }
        let mean = seats as f64 * util;
        let sd = (mean * (1.0 - util)).sqrt();
        let a = ((mean + sd * self.lr.normal()).round() as i64).clamp(0, seats);
        self.active_users = a;
        if hi <= lo {
            return;
        }
        let frac = (hi - lo) as f64 / (me - ms) as f64;
        let base = 4.0 * (0.5 + 0.7 * h) * frac;
        // The top fifth of users are power users with about twice the activity.
        let power = (seats / 5).max(1);
        self.weight += base * (0.85 * a as f64 + 0.75 * a.min(power) as f64);
        if !em.on {
            return;
        }
        let lam = base * self.w.usage_scale;
        self.tmp.clear();
        let tz = self.tz();
        for j in 0..a {
            let k = self.ur.poisson(lam * if j < power { 1.6 } else { 0.85 });
            for _ in 0..k {
                let ts = biz_ts(&mut self.ur, lo, hi, tz);
                let (f, q) = self.pick_feature(h);
                self.tmp.push((ts, j as u32, f, q));
            }
        }
        self.tmp.sort_unstable();
        while self.user_ids.len() < a as usize {
            self.user_ids.push(format!("u-{}-{}", self.num, self.user_ids.len() + 1));
        }
        for i in 0..self.tmp.len() {
            let (ts, j, f, q) = self.tmp[i];
            // Timestamps within an account are strictly increasing so no two usage
            // events are identical (the importer dedups identical events).
            let t = ts.max(self.last_usage_ts + 1);
            self.last_usage_ts = t;
            let (event, feature) = if f == LOGIN {
                ("login", V::N)
            } else {
                (FEATURES[f as usize].event, V::S(FEATURES[f as usize].name))
            };
            em.emit(
                Kind::Usage,
                t,
                &[
                    V::S(&self.id),
                    V::S(&self.user_ids[j as usize]),
                    V::S(event),
                    feature,
                    if q == 1 { V::N } else { V::I(i64::from(q)) },
                ],
            );
        }
    }

    fn pick_feature(&mut self, h: f64) -> (u8, u16) {
        let r = &mut self.ur;
        if r.chance(0.3) {
            return (LOGIN, 1);
        }
        let adv_p = [0.12, 0.7, 1.0][self.plan] * (0.05 + 0.55 * h * h);
        let f = if r.chance(adv_p) {
            let wts: Vec<f64> = FEATURES[N_BASIC..]
                .iter()
                .map(|f| if f.min_plan <= self.plan { 1.0 } else { 0.15 })
                .collect();
            N_BASIC + r.weighted(&wts)
        } else {
            // Unhealthy accounts stick to a few basic features (shallow usage).
            let k = 2 + (4.0 * h).round() as usize;
            let wts: Vec<f64> = (0..k.min(N_BASIC)).map(|i| 1.0 / (i as f64 + 1.0)).collect();
            r.weighted(&wts)
        };
        let q = if FEATURES[f].name == "api" { 1 + r.below(250) as u16 } else { 1 };
        (f as u8, q)
    }

    fn active_contacts(&self, pred: impl Fn(&Contact) -> bool) -> Vec<usize> {
        (0..self.contacts.len())
            .filter(|&i| self.contacts[i].active && pred(&self.contacts[i]))
            .collect()
    }

    fn observe(&mut self, em: &mut Emitter, agg: &mut Agg, m: u32, lo: i64, hi: i64, h: f64) {
        if hi <= lo {
            return;
        }
        let w = self.w;
        let tz = self.tz();
        let (ms, me) = (w.month_ts[m as usize], w.month_ts[m as usize + 1]);
        let frac = (hi - lo) as f64 / (me - ms) as f64;
        let age = m - self.m0;
        let seats = self.lines[0].qty as f64;
        let id = self.id.clone();
        let acct = V::S(&id);

        // Milestones due in this window.
        let (due, rest): (Vec<_>, Vec<_>) = self.milestones.iter().partition(|(t, _)| *t < hi);
        for (t, name) in due {
            if t >= lo {
                em.emit(Kind::Milestone, t, &[acct, V::S(name)]);
            }
        }
        self.milestones = rest;

        // Support tickets: more of them, and more defects, when health is low or a
        // defect wave hit the account.
        let shock = self.support_pen < -0.3;
        let lam = (0.1 + 0.2 * (1.0 + seats).log2()) * (0.4 + 1.6 * (1.0 - h))
            + if shock { 2.0 } else { 0.0 };
        for _ in 0..self.or.poisson(lam * frac) {
            self.n_tickets += 1;
            let tid = format!("t-{}-{}", self.num, self.n_tickets);
            let o = &mut self.or;
            let t0 = biz_ts(o, lo, hi, tz);
            let p_def = 0.15 + 0.35 * (1.0 - h) + if shock { 0.35 } else { 0.0 };
            let cat = ["defect", "how_to", "other"]
                [o.weighted(&[p_def, (1.0 - p_def) * 0.75, (1.0 - p_def) * 0.25])];
            let sev_w: &[f64] = match cat {
                "defect" => &[0.2, 0.45, 0.25, 0.1],
                "how_to" => &[0.5, 0.45, 0.05, 0.0],
                _ => &[0.6, 0.4, 0.0, 0.0],
            };
            let sev = o.weighted(sev_w);
            let severity = ["low", "normal", "high", "urgent"][sev];
            let close_in = [
                o.range(DAY, 10 * DAY),
                o.range(DAY, 5 * DAY),
                o.range(4 * HOUR, 3 * DAY),
                o.range(2 * HOUR, DAY),
            ][sev];
            let cost =
                ([1_500, 3_500, 9_000, 20_000][sev] as f64 * o.uniform(0.6, 1.6)).round() as i64;
            let csat = o.chance(0.45).then(|| {
                let s = 3.0 + 6.5 * h + 1.3 * o.normal() - if cat == "defect" { 1.0 } else { 0.0 };
                s.round().clamp(1.0, 10.0) as i64
            });
            let reopen = o.chance(if cat == "defect" { 0.1 } else { 0.04 });
            let reopen_in = o.range(DAY, 5 * DAY);
            let reclose_in = o.range(HOUR, 3 * DAY);
            em.emit(
                Kind::Ticket,
                t0,
                &[acct, V::S(&tid), V::S("opened"), V::S(cat), V::S(severity), V::N, V::N],
            );
            let t1 = t0 + close_in;
            if t1 < w.horizon {
                agg.ticket_cost[m as usize] += cost;
                let csat_v = csat.map_or(V::N, V::I);
                let close = [
                    acct,
                    V::S(&tid),
                    V::S("closed"),
                    V::S(cat),
                    V::S(severity),
                    V::M(cost),
                    csat_v,
                ];
                em.emit(Kind::Ticket, t1, &close);
                let t2 = t1 + reopen_in;
                if reopen && t2 < w.horizon {
                    em.emit(
                        Kind::Ticket,
                        t2,
                        &[
                            acct,
                            V::S(&tid),
                            V::S("reopened"),
                            V::S(cat),
                            V::S(severity),
                            V::N,
                            V::N,
                        ],
                    );
                    let t3 = t2 + reclose_in;
                    if t3 < w.horizon {
                        let close = [
                            acct,
                            V::S(&tid),
                            V::S("closed"),
                            V::S(cat),
                            V::S(severity),
                            V::N,
                            V::N,
                        ];
                        em.emit(Kind::Ticket, t3, &close);
                    }
                }
            }
        }

        // NPS every six months (from the third month), to every active contact.
        if age % 6 == 3 {
            let cause = self.cause();
            for i in self.active_contacts(|_| true) {
                let o = &mut self.or;
                let t = biz_ts(o, lo, hi, tz);
                let adj = match self.contacts[i].role {
                    "champion" => 0.5,
                    "end_user" => -0.3,
                    _ => 0.0,
                };
                let score =
                    (1.0 + 9.5 * h + 1.4 * o.normal() + adj).round().clamp(0.0, 10.0) as i64;
                let responds = o.chance(0.12 + 0.5 * h);
                let rt = t + o.range(HOUR, 6 * DAY);
                let comment = o.chance(0.35).then(|| nps_comment(o, score, cause));
                let cid = V::S(&self.contacts[i].id);
                em.emit(Kind::SurveySent, t, &[acct, V::S("nps"), cid, V::N, V::N]);
                if responds && rt < w.horizon {
                    em.emit(
                        Kind::SurveyResponse,
                        rt,
                        &[acct, V::S("nps"), cid, V::I(score), comment.map_or(V::N, V::S)],
                    );
                }
            }
        }
        // Occasional CSAT pulse to the champion, yearly success-perception survey.
        let champ = self.active_contacts(|c| c.role == "champion").first().copied();
        if let (Some(i), true) = (champ, age % 3 == 1 && self.or.chance(0.3)) {
            let o = &mut self.or;
            let t = biz_ts(o, lo, hi, tz);
            let score = (2.5 + 7.0 * h + 1.2 * o.normal()).round().clamp(1.0, 10.0) as i64;
            let rt = t + o.range(HOUR, 4 * DAY);
            let cid = V::S(&self.contacts[i].id);
            em.emit(Kind::SurveySent, t, &[acct, V::S("csat"), cid, V::N, V::N]);
            if o.chance(0.3 + 0.4 * h) && rt < w.horizon {
                em.emit(Kind::SurveyResponse, rt, &[acct, V::S("csat"), cid, V::I(score), V::N]);
            }
        }
        if age % 12 == 11 {
            let dm = self
                .active_contacts(|c| c.role == "decision_maker" || c.role == "executive_sponsor");
            if let Some(&i) = dm.first() {
                let o = &mut self.or;
                let t = biz_ts(o, lo, hi, tz);
                let rt = t + o.range(HOUR, 7 * DAY);
                let pos = h.powf(1.3);
                let neg = (1.0 - h).powi(2);
                let score = ["positive", "neutral", "negative"]
                    [o.weighted(&[pos, (1.0 - pos - neg).max(0.05), neg])];
                let cid = V::S(&self.contacts[i].id);
                em.emit(Kind::SurveySent, t, &[acct, V::S("success"), cid, V::N, V::N]);
                if o.chance(0.5 + 0.3 * h) && rt < w.horizon {
                    em.emit(
                        Kind::SurveyResponse,
                        rt,
                        &[acct, V::S("success"), cid, V::S(score), V::N],
                    );
                }
            }
        }

        // Marketing email: monthly newsletter to the champion, a product update every
        // quarter to admins and decision makers.
        let mut sends: Vec<(usize, String, i64)> = Vec::new();
        let label = &w.month_labels[m as usize];
        if let Some(i) = champ {
            sends.push((i, format!("newsletter-{label}"), ms + DAY + 14 * HOUR));
        }
        if m.is_multiple_of(3) {
            for i in self.active_contacts(|c| {
                matches!(c.role, "admin" | "decision_maker" | "executive_sponsor")
            }) {
                sends.push((i, format!("product-update-{label}"), ms + 9 * DAY + 15 * HOUR));
            }
        }
        for (i, campaign, t) in &sends {
            if *t < lo || *t >= hi {
                continue;
            }
            let o = &mut self.or;
            let cid = V::S(&self.contacts[*i].id);
            em.emit(Kind::Email, *t, &[acct, cid, V::S(campaign), V::S("sent")]);
            if o.chance(0.1 + 0.45 * h) {
                let t1 = t + o.range(600, 3 * DAY);
                if t1 < w.horizon {
                    em.emit(Kind::Email, t1, &[acct, cid, V::S(campaign), V::S("opened")]);
                    let t2 = t1 + o.range(5, 900);
                    if o.chance(0.15 + 0.25 * h) && t2 < w.horizon {
                        em.emit(Kind::Email, t2, &[acct, cid, V::S(campaign), V::S("clicked")]);
                    }
                }
            }
        }

        // Docs and website visits: engaged accounts read the docs; unhappy ones look at
        // pricing and the cancellation page.
        let lam = (0.3 + 2.5 * h) * (1.0 + (1.0 + seats).ln() / 2.0) * frac;
        let people = self.active_contacts(|_| true);
        let mut visits: Vec<(i64, usize, &'static str, Option<usize>)> = Vec::new();
        for _ in 0..self.or.poisson(lam) {
            let o = &mut self.or;
            let t = biz_ts(o, lo, hi, tz);
            let low = if h < 0.45 { 1.0 } else { 0.05 };
            let (sec, page) = [
                ("docs", "/docs/getting-started"),
                ("docs", "/docs/dashboards"),
                ("docs", "/docs/automations"),
                ("docs", "/docs/api"),
                ("docs", "/docs/integrations"),
                ("website", "/"),
                ("website", "/blog"),
                ("website", "/changelog"),
                ("website", "/pricing"),
                ("other", "/community"),
                ("other", "/account/cancel"),
            ][o.weighted(&[
                3.0,
                2.0,
                1.5 * h,
                1.0 * h,
                1.2,
                1.0,
                1.0,
                0.8,
                0.5 + low,
                0.6,
                0.02 + 0.5 * low,
            ])];
            let who = (!people.is_empty() && o.chance(0.6))
                .then(|| people[o.below(people.len() as u64) as usize]);
            visits.push((t, 0, page, who));
            let last = visits.len() - 1;
            visits[last].1 =
                ["docs", "website", "other"].iter().position(|s| *s == sec).unwrap_or(2);
        }
        visits.sort_unstable();
        let mut last_t = i64::MIN;
        for (t, sec, page, who) in visits {
            let t = t.max(last_t + 1);
            last_t = t;
            let cid = who.map_or(V::N, |i| V::S(&self.contacts[i].id));
            em.emit(
                Kind::WebVisit,
                t,
                &[acct, cid, V::S(["docs", "website", "other"][sec]), V::S(page)],
            );
        }

        // CSM activity: touchpoints, QBRs, assessments, success objectives.
        if let Some(csm) = self.csm {
            let rate = [0.3, 1.0, 2.5][self.seg] * (0.8 + 0.6 * (1.0 - h)) * frac;
            let mut tps: Vec<(i64, &'static str)> = Vec::new();
            for _ in 0..self.or.poisson(rate) {
                let kind = ["call", "meeting", "email_thread", "training"]
                    [self.or.weighted(&[0.4, 0.25, 0.25, 0.1])];
                tps.push((biz_ts(&mut self.or, lo, hi, tz), kind));
            }
            if self.seg > 0 && age % 3 == 2 && self.or.chance(0.55 + 0.4 * h) {
                let t = biz_ts(&mut self.or, lo, hi, tz);
                tps.push((t, "qbr"));
                em.emit(Kind::Milestone, t, &[acct, V::S("qbr_held")]);
            }
            for (t, kind) in tps {
                let o = &mut self.or;
                let pos = 0.1 + 0.75 * h * h;
                let neg = 0.03 + 0.5 * (1.0 - h).powi(2);
                let s = o.weighted(&[pos, (1.0 - pos - neg).max(0.05), neg]);
                let sentiment = ["positive", "neutral", "negative"][s];
                let note = o.chance(0.4).then(|| match (kind, s) {
                    ("qbr", _) => "quarterly business review",
                    (_, 2) => "escalation follow-up",
                    ("training", _) => "admin training session",
                    _ if self.lines[0].annual && self.lines[0].term_end - t < 90 * DAY => {
                        "renewal discussion"
                    }
                    _ => "regular check-in",
                });
                em.emit(
                    Kind::Touchpoint,
                    t,
                    &[acct, V::S(kind), V::S(sentiment), note.map_or(V::N, V::S)],
                );
            }
            if age.is_multiple_of(3) && age > 0 {
                let o = &mut self.or;
                let rel = (1.0 + 4.0 * h + 0.6 * o.normal()).round().clamp(1.0, 5.0) as i64;
                let t = biz_ts(o, lo, hi, tz);
                em.emit(Kind::Assessment, t, &[acct, V::I(rel), V::I(self.strategic), V::S(csm)]);
            }
            if self.seg > 0 && age % 12 == 1 {
                for _ in 0..1 + self.or.below(3) {
                    self.n_obj += 1;
                    let oid = format!("o-{}-{}", self.num, self.n_obj);
                    let t = biz_ts(&mut self.or, lo, hi, tz);
                    em.emit(Kind::SuccessObjective, t, &[acct, V::S(&oid), V::S("planned"), V::N]);
                    let due = m + 3 + self.or.below(7) as u32;
                    self.objectives.push((due, oid));
                }
            }
        }
        let (due, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.objectives).into_iter().partition(|(d, _)| *d <= m);
        self.objectives = rest;
        for (_, oid) in due {
            let o = &mut self.or;
            let t = biz_ts(o, lo, hi, tz);
            if o.chance(0.2 + 0.7 * h) {
                let (a, b) =
                    [(0.0, 0.0), (500_000.0, 6_000_000.0), (2_000_000.0, 40_000_000.0)][self.seg];
                let value = o.uniform(a, b).round() as i64;
                em.emit(
                    Kind::SuccessObjective,
                    t,
                    &[acct, V::S(&oid), V::S("achieved"), V::M(value)],
                );
            } else {
                em.emit(Kind::SuccessObjective, t, &[acct, V::S(&oid), V::S("missed"), V::N]);
            }
        }

        // Change requests: a sign of will to invest, from mid-market and enterprise.
        if self.seg > 0 {
            let lam = (0.05 + 0.3 * h) * if self.seg == 2 { 1.5 } else { 1.0 } * frac;
            for _ in 0..self.or.poisson(lam) {
                self.n_cr += 1;
                let rid = format!("cr-{}-{}", self.num, self.n_cr);
                let o = &mut self.or;
                let t = biz_ts(o, lo, hi, tz);
                em.emit(Kind::ChangeRequest, t, &[acct, V::S(&rid), V::S("opened")]);
                let outcome = ["done", "rejected", "open"][o.weighted(&[0.65, 0.2, 0.15])];
                if outcome != "open" {
                    self.requests.push((m + 1 + o.below(3) as u32, rid, outcome));
                }
            }
        }
        let (due, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.requests).into_iter().partition(|r| r.0 <= m);
        self.requests = rest;
        for (_, rid, outcome) in due {
            let t = biz_ts(&mut self.or, lo, hi, tz);
            em.emit(Kind::ChangeRequest, t, &[acct, V::S(&rid), V::S(outcome)]);
        }
    }

    /// The anniversary of month-to-month lines: invoice, pause/resume, payment trouble.
    fn monthly_billing(&mut self, em: &mut Emitter, m: u32, churn: Option<(i64, bool)>) {
        let ann = self.next_bill;
        let next = add_months(ann, 1);
        self.next_bill = next;
        if let Some((_, invol)) = churn {
            if invol {
                // Involuntary churn: the card fails and the line ends past_due -> canceled.
                for li in 0..self.lines.len() {
                    let id = self.new_invoice_id();
                    self.emit_invoice(em, &id, ann, self.lines[li].amount(), "failed", (ann, next));
                    self.emit_sub(em, li, ann + 60, "past_due", None, None);
                }
            }
            return;
        }
        if let Some(until) = self.paused_until {
            if m < until {
                return;
            }
            self.paused_until = None;
            for li in 0..self.lines.len() {
                self.emit_sub(em, li, ann, "active", None, None);
            }
        } else if self.seg == 0 && self.lr.chance(0.004 + 0.01 * (1.0 - self.h)) {
            self.paused_until = Some(m + 1 + self.lr.below(2) as u32);
            for li in 0..self.lines.len() {
                self.emit_sub(em, li, ann, "paused", None, None);
            }
            return;
        }
        for li in 0..self.lines.len() {
            let amount = self.lines[li].amount();
            if li == 0 && self.or.chance(0.01 + 0.03 * (1.0 - self.h)) {
                // Failed payment that recovers a few days later.
                let id = self.new_invoice_id();
                let fix = ann + self.or.range(2 * DAY, 6 * DAY);
                self.emit_invoice(em, &id, ann, amount, "failed", (ann, next));
                self.emit_sub(em, li, ann + 60, "past_due", None, None);
                self.emit_invoice(em, &id, fix, amount, "paid", (ann, next));
                if fix < self.w.horizon {
                    self.emit_sub(em, li, fix, "active", None, None);
                }
            } else {
                self.bill(em, ann, amount, ann, next);
            }
        }
    }

    /// Annual renewal at term end: new term, seats resized to adoption, price uplift if
    /// one was announced.
    fn renew(&mut self, em: &mut Emitter, te: i64, h: f64) {
        let qty = self.lines[0].qty;
        let util = self.active_users as f64 / qty as f64;
        let new_qty = if h > 0.65 && util > 0.8 && self.lr.chance(0.6) {
            (qty as f64 * self.lr.uniform(1.05, 1.3)).ceil() as i64
        } else if h < 0.5 && util < 0.6 && self.lr.chance(0.6) {
            ((self.active_users as f64 * 1.1).max(qty as f64 * 0.6).round() as i64).clamp(1, qty)
        } else {
            qty
        };
        self.lines[0].qty = new_qty;
        let uplift = if self.price_announced { self.lr.uniform(1.07, 1.15) } else { 1.0 };
        self.price_announced = false;
        for li in 0..self.lines.len() {
            let l = &mut self.lines[li];
            l.unit = (l.unit as f64 * uplift).round() as i64;
            l.term_start = te;
            l.term_end = add_months(te, 12);
            let (amount, te2) = (l.amount(), l.term_end);
            self.emit_sub(em, li, te, "active", None, None);
            self.bill(em, te, amount, te, te2);
        }
    }

    /// Mid-period commercial changes driven by health and adoption.
    fn commercial(&mut self, em: &mut Emitter, lo: i64, ms: i64, me: i64, h: f64) {
        let annual = self.lines[0].annual;
        let tz = self.tz();
        if self.price_change_pending {
            self.price_change_pending = false;
            let t = (ms + DAY + 9 * HOUR).max(lo + HOUR).max(self.last_sub_ts + HOUR);
            if t < me {
                for li in 0..self.lines.len() {
                    let l = &mut self.lines[li];
                    l.unit = (l.unit as f64 * 1.1).round() as i64;
                    self.emit_sub(em, li, t, "active", None, None);
                }
            }
        }
        let lo = lo.max(self.last_sub_ts + HOUR);
        if lo >= me - HOUR {
            return;
        }
        let qty = self.lines[0].qty;
        let util = self.active_users as f64 / qty as f64;
        let has_x = self.lines.len() > 1;
        let p_up =
            if self.plan < 2 { 0.01 * h * h * if h > 0.75 { 2.0 } else { 1.0 } } else { 0.0 };
        let p_x = if has_x { 0.0 } else { 0.008 * h * if self.seg > 0 { 2.0 } else { 1.0 } };
        let p_exp = 0.04 * [0.8, 1.0, 1.3][self.seg] * h * h * if util > 0.8 { 2.0 } else { 0.5 };
        let p_con = if annual {
            0.0
        } else {
            0.06 * (1.0 - h).powi(2) * if util < 0.6 { 2.0 } else { 0.3 }
        };
        let u = self.lr.f64();
        let t = biz_ts(&mut self.lr, lo, me - HOUR, tz);
        let main = &self.lines[0];
        let old_amount = main.amount();
        let (ts0, te0) = (main.term_start, main.term_end);
        let prorate = |delta: i64| -> i64 {
            if te0 <= t {
                0
            } else {
                (delta as f64 * (te0 - t) as f64 / (te0 - ts0) as f64).round() as i64
            }
        };
        if u < p_up {
            self.plan += 1;
            self.lines[0].plan = PLANS[self.plan];
            self.lines[0].unit = Self::unit_price(SEAT_PRICE[self.plan], annual);
            self.emit_sub(em, 0, t, "active", None, None);
            let delta = self.lines[0].amount() - old_amount;
            if annual && prorate(delta) > 0 {
                self.bill(em, t, prorate(delta), t, te0);
            }
            // Re-emit the account so its `plan` attribute follows the upgrade; the other
            // attributes are unchanged (upsert semantics).
            em.emit(
                Kind::Account,
                t,
                &[
                    V::S(&self.id),
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    V::S(PLANS[self.plan]),
                    V::N,
                    V::N,
                ],
            );
        } else if u < p_up + p_x {
            let service = self.seg > 0 && self.lr.chance(0.5);
            let id = self.new_sub_id();
            let line = if service {
                let fee = [20_000, 75_000, 200_000][self.seg];
                Line {
                    id,
                    product: "success_plan",
                    kind: "service",
                    plan: "premium",
                    qty: 1,
                    unit: if annual { fee * 12 } else { fee },
                    annual,
                    term_start: t,
                    term_end: te0,
                }
            } else {
                Line {
                    id,
                    product: "analytics",
                    kind: "product",
                    plan: "standard",
                    qty: (qty / 2).max(1),
                    unit: Self::unit_price(800, annual),
                    annual,
                    term_start: t,
                    term_end: te0,
                }
            };
            let full = line.amount();
            self.lines.push(line);
            let li = self.lines.len() - 1;
            self.emit_sub(em, li, t, "active", None, None);
            let (amount, pe) = if annual {
                (prorate(full), te0)
            } else {
                let nb = self.next_bill;
                (
                    (full as f64 * (nb - t) as f64 / (nb - add_months(nb, -1)) as f64).round()
                        as i64,
                    nb,
                )
            };
            if amount > 0 {
                self.bill(em, t, amount, t, pe);
            }
        } else if u < p_up + p_x + p_exp {
            let add = ((qty as f64 * self.lr.uniform(0.05, 0.3)).round() as i64).max(1);
            self.lines[0].qty += add;
            self.emit_sub(em, 0, t, "active", None, None);
            if annual {
                let delta = self.lines[0].amount() - old_amount;
                if prorate(delta) > 0 {
                    self.bill(em, t, prorate(delta), t, te0);
                }
            }
        } else if u < p_up + p_x + p_exp + p_con && qty > 1 {
            self.lines[0].qty =
                ((qty as f64 * self.lr.uniform(0.6, 0.9)).round() as i64).clamp(1, qty - 1);
            self.emit_sub(em, 0, t, "active", None, None);
        }
    }

    fn churn(
        &mut self,
        em: &mut Emitter,
        m: u32,
        ms: i64,
        stop: i64,
        invol: bool,
        cause: &'static str,
    ) {
        let reason = if invol {
            "payment_failed"
        } else if self.or.chance(0.25) {
            *self.or.pick(&[
                "too_expensive",
                "not_using",
                "switched_competitor",
                "business_closed",
                "other",
            ])
        } else {
            match cause {
                "low_adoption" => "not_using",
                "champion_left" => "no_internal_owner",
                "support_pain" => "product_issues",
                "price" => "too_expensive",
                "detractor" => "switched_competitor",
                _ => "other",
            }
        };
        // Customers often give notice: the line shows a scheduled cancellation first.
        if !invol && self.or.chance(0.5) {
            let earliest = (self.last_sub_ts + HOUR).max(if self.lines[0].annual {
                stop - 60 * DAY
            } else {
                ms
            });
            if earliest < stop - HOUR {
                let t = self.or.range(earliest, stop - HOUR);
                for li in 0..self.lines.len() {
                    self.emit_sub(em, li, t, "active", None, Some(stop));
                }
            }
        }
        for li in 0..self.lines.len() {
            self.emit_sub(em, li, stop, "canceled", Some(reason), None);
        }
        if self.first_churn.is_none() {
            self.first_churn = Some((stop, cause));
        }
        self.live = false;
        self.paused_until = None;
        self.milestones.clear();
        self.objectives.clear();
        self.requests.clear();
        if self.lr.chance(0.1) {
            self.reactivate_at = Some(m + 3 + self.lr.below(10) as u32);
        }
    }

    /// A lost customer comes back, on the same subscription line or a new one.
    fn reactivate(&mut self, em: &mut Emitter, ms: i64) {
        let t = ms + self.lr.range(0, 27) * DAY + self.lr.range(8 * HOUR, 18 * HOUR) + self.tz();
        let m = self.w.month_of(t);
        self.live = true;
        self.reactivate_at = None;
        self.cur_start_month = m;
        self.cur_start_ts = t;
        self.noise = 0.0;
        self.champ_pen = 0.0;
        self.support_pen = 0.0;
        self.price_pen = 0.0;
        self.price_change_pending = false;
        self.price_announced = false;
        self.b += 0.3;
        self.lines.truncate(1);
        if self.lr.chance(0.5) {
            self.lines[0].id = self.new_sub_id();
        }
        let qty = self.lines[0].qty;
        self.lines[0].qty = ((qty as f64 * self.lr.uniform(0.6, 1.0)).round() as i64).max(1);
        self.lines[0].term_start = t;
        self.lines[0].term_end = add_months(t, 12);
        self.next_bill = add_months(t, 1);
        self.emit_sub(em, 0, t, "active", None, None);
        let pe = if self.lines[0].annual { self.lines[0].term_end } else { self.next_bill };
        let amount = self.lines[0].amount();
        self.bill(em, t, amount, t, pe);
        self.reactivated_at.get_or_insert(t);
        if self.champ_replace_at.take().is_some() {
            let domain = self.domain();
            self.add_contact(em, "champion", t + HOUR, &domain);
        }
        self.h = sigmoid(self.health_x());
    }

    fn finish(&mut self, em: &mut Emitter) {
        if !em.on {
            return;
        }
        let ts = |t: Option<i64>| t.map(crate::time::ts_string).unwrap_or_default();
        self.line_buf.clear();
        let _ = writeln!(
            self.line_buf,
            "{},{},{},{},{},{},{}",
            self.id,
            SEGMENTS[self.seg],
            PLANS[self.orig_plan],
            crate::time::ts_string(self.orig_start),
            ts(self.first_churn.map(|c| c.0)),
            self.first_churn.map_or("", |c| c.1),
            ts(self.reactivated_at),
        );
        em.bufs[TRUTH_ACCOUNTS].extend_from_slice(self.line_buf.as_bytes());
    }
}

fn nps_comment(o: &mut Rng, score: i64, cause: &str) -> &'static str {
    if score >= 9 {
        pick_str(
            o,
            &[
                "Great product, the team loves it",
                "Saves us hours every week",
                "Support is excellent",
            ],
        )
    } else if score >= 7 {
        pick_str(o, &["Does the job", "Good, but missing a few features", "Solid, a bit pricey"])
    } else {
        match cause {
            "support_pain" => "Too many bugs lately, support is slow",
            "price" => "The price increase is hard to justify",
            "champion_left" => "We lost the person who ran this internally",
            "low_adoption" => "Hard to get the team to use it",
            _ => pick_str(o, &["Not worth it for us", "Considering alternatives", "Hard to use"]),
        }
    }
}

fn pick_str(o: &mut Rng, xs: &[&'static str]) -> &'static str {
    xs[o.below(xs.len() as u64) as usize]
}
