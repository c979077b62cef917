//! The fold of one account: subscription states -> line values -> account steps ->
//! grouped, classified movements; terms -> renewals.

use crate::config::{ChurnRecognition, PauseMode, RevenueConfig};
use crate::*;
use tenure_core::event::{LineKind, SubStatus};
use tenure_core::money::{Currency, FxTable, div_round};
use tenure_core::time::DAY;

pub(crate) fn missing_rate(c: Currency, fx: &FxTable) -> Diagnostic {
    Diagnostic(format!(
        "no exchange rate from {c} to {}: amounts in {c} were taken as {}",
        fx.base, fx.base
    ))
}

/// What one line contributes from a point in time on.
#[derive(Clone, Debug)]
struct LineVal {
    /// Native minor units per month.
    native: i64,
    /// Native minor units per year, computed from the price (not 12 x the rounded MRR), so
    /// that an annual contract's ARR is its exact contract value.
    native_arr: i64,
    currency: Currency,
    /// Keeps an account that has paid a customer even at 0 MRR (a free plan when free plans
    /// are not churn, a pause counted as contraction).
    keeps_customer: bool,
    seats: u64,
    product: Arc<str>,
    plan: Option<Arc<str>>,
    /// A service line (success plan, extended support) rather than a product.
    service: bool,
    /// On a value that ends the line: it ended for want of payment.
    involuntary: bool,
    /// The line will end: a cancellation is scheduled (`cancel_at`) or, with term-end
    /// recognition, was sent and waits for the term to run out. Outside committed MRR.
    pending_end: bool,
    /// On a value that ends the line by a cancellation: its `cancel_reason`.
    cancel_reason: Option<Arc<str>>,
}

fn line_mrr(s: &Subscription) -> i64 {
    div_round(s.amount.minor as i128, s.interval_months.max(1) as i128) as i64
}

fn line_arr(s: &Subscription) -> i64 {
    // Validation bounds amounts far below this, but never let a product wrap.
    i64::try_from(div_round(s.amount.minor as i128 * 12, s.interval_months.max(1) as i128))
        .unwrap_or(i64::MAX)
}

fn eval(
    s: &Subscription,
    cfg: &RevenueConfig,
    product: &Arc<str>,
    plan: &Option<Arc<str>>,
) -> LineVal {
    let mrr = line_mrr(s);
    let live = |native: i64| LineVal {
        native,
        native_arr: if native > 0 { line_arr(s) } else { 0 },
        currency: s.amount.currency,
        keeps_customer: native > 0 || !cfg.free_is_churn,
        seats: if s.kind == LineKind::Product && native > 0 { s.quantity } else { 0 },
        service: s.kind == LineKind::Service,
        product: product.clone(),
        plan: plan.clone(),
        involuntary: false,
        pending_end: false,
        cancel_reason: None,
    };
    let zero = |keeps: bool| LineVal { keeps_customer: keeps, seats: 0, ..live(0) };
    let cancelled =
        || LineVal { cancel_reason: s.cancel_reason.as_deref().map(Arc::from), ..zero(false) };
    match s.status {
        SubStatus::Active | SubStatus::PastDue => {
            if cfg.churn_recognition == ChurnRecognition::Scheduled && s.cancel_at.is_some() {
                cancelled()
            } else {
                LineVal { pending_end: s.cancel_at.is_some(), ..live(mrr) }
            }
        }
        SubStatus::Paused => match cfg.pause {
            PauseMode::Keep => live(mrr),
            PauseMode::Contraction => zero(true),
            PauseMode::Churn => zero(false),
        },
        SubStatus::Trialing => zero(false),
        SubStatus::Canceled => cancelled(),
    }
}

/// Whether a line that stops here stops for want of payment (involuntary churn): it was
/// past due, or the cancellation gives Stripe's reason `payment_failed`.
fn payment_caused(s: &Subscription, was_past_due: bool) -> bool {
    was_past_due
        || s.status == SubStatus::PastDue
        || s.cancel_reason.as_deref() == Some(crate::PAYMENT_FAILED)
}

/// Change points of one line: (ts, order, value). `order` keeps log order within a timestamp.
fn line_points(
    states: &[(Timestamp, usize, &Subscription)],
    cfg: &RevenueConfig,
    as_of: Timestamp,
    renewals: &mut Vec<Renewal>,
    scheduled: &mut Vec<(Timestamp, Timestamp)>,
    rewrites: &mut Vec<(Timestamp, Timestamp)>,
    horizon: &mut Timestamp,
) -> Vec<(Timestamp, usize, LineVal)> {
    let mut out: Vec<(Timestamp, usize, LineVal)> = Vec::new();
    let mut past_due_since: Option<Timestamp> = None;
    // The value and term end of the line's last live state (for churn at term end).
    let mut live_val: Option<LineVal> = None;
    let mut live_term_end: Option<Timestamp> = None;
    // The open term: its due date and the index of its renewal record.
    let mut open_term: Option<(Timestamp, usize)> = None;
    // A renewal lost only because the line went unpaid: paying again reopens it.
    let mut provisional: Option<usize> = None;
    let mut product: Option<Arc<str>> = None;
    let mut plan: Option<Arc<str>> = None;
    for (i, &(ts, order, s)) in states.iter().enumerate() {
        let next_ts = states.get(i + 1).map_or(Timestamp::MAX, |n| n.0);
        // Lines rarely change product or plan: share the previous state's names.
        let product_name = s.product.as_deref().unwrap_or("(default)");
        if product.as_deref() != Some(product_name) {
            product = Some(Arc::from(product_name));
        }
        if plan.as_deref() != s.plan.as_deref() {
            plan = s.plan.as_deref().map(Arc::from);
        }
        let product = product.clone().unwrap_or_else(|| Arc::from(product_name));
        let mut val = eval(s, cfg, &product, &plan);
        // A cancellation that takes effect now (or at the term end) records whether it was
        // for want of payment.
        let ends = s.status == SubStatus::Canceled
            || (cfg.churn_recognition == ChurnRecognition::Scheduled
                && s.cancel_at.is_some()
                && matches!(s.status, SubStatus::Active | SubStatus::PastDue));
        if ends {
            val.involuntary = payment_caused(s, past_due_since.is_some());
        }
        let ends_involuntary = val.involuntary;

        // Renewals: a follow-on term (ending later than the one due, or starting at or after
        // its end) settles the open one as won; a cancellation settles it as lost.
        let live = matches!(s.status, SubStatus::Active | SubStatus::PastDue | SubStatus::Paused);
        if let Some(idx) = provisional.take()
            && live
        {
            renewals[idx].outcome = RenewalOutcome::Open;
            open_term = Some((renewals[idx].due, idx));
        }
        if let Some((due, idx)) = open_term {
            let new_term = live
                && (s.term_end.is_some_and(|e| e > due)
                    || s.term_start.is_some_and(|st| st >= due));
            if new_term {
                renewals[idx].outcome = RenewalOutcome::Won { at: ts, arr: 0 };
                open_term = None;
            } else if s.status == SubStatus::Canceled {
                renewals[idx].outcome = RenewalOutcome::Lost { at: ts };
                open_term = None;
            }
        }

        // Churn at term end: a line cancelled mid-term keeps its value until the term runs
        // out, however often the cancellation is sent again.
        let mut deferred_end: Option<Timestamp> = None;
        if s.status == SubStatus::Canceled
            && cfg.churn_recognition == ChurnRecognition::TermEnd
            && let (Some(lv), Some(te)) = (&live_val, live_term_end)
            && te > ts
        {
            val = LineVal { pending_end: true, ..lv.clone() };
            deferred_end = Some(te);
        }
        if live {
            live_val = Some(val.clone());
            live_term_end = s.term_end;
        }

        if s.status == SubStatus::PastDue {
            past_due_since.get_or_insert(ts);
        } else {
            past_due_since = None;
        }
        out.push((ts, order, val));

        // Open (or refresh) the term this state names.
        if live && let Some(te) = s.term_end {
            let arr_due = line_arr(s);
            match open_term {
                Some((due, idx)) => {
                    // The same term, or an amendment that moved its end earlier (which a
                    // fold at an instant between the opening and the amendment does not see).
                    if te < due {
                        rewrites.push((renewals[idx].opened, ts));
                    }
                    renewals[idx].due = due.min(te);
                    renewals[idx].arr_due = arr_due;
                    open_term = Some((due.min(te), idx));
                }
                // A term already settled (say lost, then the line was updated) is not due again.
                None if renewals
                    .iter()
                    .any(|r| r.subscription_id == s.subscription_id && r.due == te) => {}
                None => {
                    renewals.push(Renewal {
                        subscription_id: s.subscription_id.clone(),
                        opened: ts,
                        due: te,
                        arr_due,
                        outcome: RenewalOutcome::Open,
                    });
                    open_term = Some((te, renewals.len() - 1));
                }
            }
        }
        // Derived points that happen before the next event of the line, if known by as_of.
        let mut derived: Option<(Timestamp, bool)> = None;
        if let Some(te) = deferred_end {
            derived = Some((te, ends_involuntary));
        }
        if let (Some(since), Some(days)) = (past_due_since, cfg.past_due_churn_days) {
            let at = since.add_days(days as i64).max(ts);
            if derived.is_none_or(|(d, _)| at < d) {
                derived = Some((at, true));
            }
        }
        if let Some(c) = s.cancel_at
            && matches!(s.status, SubStatus::Active | SubStatus::PastDue)
        {
            // One entry per effective instant, with the earliest notice: whichever line a
            // fold reads first, a notice given later never hides one given before.
            match scheduled.iter_mut().find(|x| x.1 == c) {
                Some(x) => x.0 = x.0.min(ts),
                None => scheduled.push((ts, c)),
            }
            let at = c.max(ts);
            if cfg.churn_recognition != ChurnRecognition::Scheduled {
                if derived.is_none_or(|(d, _)| at < d) {
                    derived = Some((at, payment_caused(s, false)));
                }
            } else if at < next_ts && at > as_of {
                // A fold at `at` or later settles the open term here.
                *horizon = (*horizon).min(at);
            } else if at < next_ts
                && at <= as_of
                && let Some((_, idx)) = open_term.take()
            {
                // Revenue left at the notice; the contract itself ends when the notice runs out.
                renewals[idx].outcome = RenewalOutcome::Lost { at };
            }
        }
        if let Some((at, _)) = derived
            && at < next_ts
            && at > as_of
        {
            // Not known yet: a fold at `at` or later has this change.
            *horizon = (*horizon).min(at);
        }
        if let Some((at, involuntary)) = derived
            && at < next_ts
            && at <= as_of
        {
            let mut z = eval(
                &Subscription { status: SubStatus::Canceled, ..s.clone() },
                cfg,
                &product,
                &plan,
            );
            z.involuntary = involuntary;
            out.push((at, order, z));
            if let Some((_, idx)) = open_term.take() {
                renewals[idx].outcome = RenewalOutcome::Lost { at };
                if involuntary {
                    provisional = Some(idx);
                }
            }
        }
    }
    out
}

/// Account state while walking change points.
#[derive(Clone, Debug, Default)]
struct Walk {
    mrr: i64,
    arr: i64,
    service_mrr: i64,
    customer: bool,
    seats: u64,
    plan: Option<Arc<str>>,
    /// Products with positive base MRR, for upsell vs cross-sell.
    products: Vec<(Arc<str>, i64)>,
    /// Products of every live line, paid or not: resuming a paused product is not a cross-sell.
    held: Vec<Arc<str>>,
    involuntary: bool,
    /// MRR and ARR of the lines without a pending end.
    committed_mrr: i64,
    committed_arr: i64,
    /// Foreign-currency lines: (currency, native MRR, booked base MRR).
    fx: Vec<(Currency, i64, i64)>,
    /// Of the lines that lost their value at this instant, the largest: (its base MRR before,
    /// its cancel reason).
    lost: Option<(i64, Option<Arc<str>>)>,
}

pub(crate) fn fold_account(
    raw: &RawAccount,
    cfg: &RevenueConfig,
    as_of: Timestamp,
    moves: &[(Timestamp, String, String)],
) -> (AccountLedger, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    // The earliest instant after `as_of` at which a fold sees more: an event dated later,
    // or a change derived from the events (a scheduled cancellation taking effect, say).
    let mut horizon = Timestamp::MAX;
    {
        let mut later = |ts: Timestamp| {
            if ts > as_of {
                horizon = horizon.min(ts);
            }
        };
        raw.subs.times().for_each(&mut later);
        raw.invoices.times().for_each(&mut later);
        raw.attributes.times().for_each(&mut later);
        raw.name.iter().for_each(|(ts, _)| later(*ts));
        raw.cs.times().for_each(&mut later);
        moves.iter().for_each(|(ts, ..)| later(*ts));
    }
    let decoded = raw.subs.subscriptions();
    let mut subs: Vec<(Timestamp, usize, &Subscription)> = decoded
        .iter()
        .enumerate()
        .filter(|(_, (ts, _))| *ts <= as_of)
        .map(|(i, (ts, s))| (*ts, i, s))
        .collect();
    subs.sort_by(|a, b| {
        (a.2.subscription_id.as_str(), a.0, a.1).cmp(&(b.2.subscription_id.as_str(), b.0, b.1))
    });

    let mut renewals = Vec::new();
    let mut scheduled = Vec::new();
    let mut rewrites = Vec::new();
    // (ts, order, line index, value)
    let mut points: Vec<(Timestamp, usize, usize, LineVal)> = Vec::new();
    let mut line_count = 0;
    for line in subs.chunk_by(|a, b| a.2.subscription_id == b.2.subscription_id) {
        for (ts, order, v) in line_points(
            line,
            cfg,
            as_of,
            &mut renewals,
            &mut scheduled,
            &mut rewrites,
            &mut horizon,
        ) {
            points.push((ts, order, line_count, v));
        }
        line_count += 1;
    }
    points.sort_by_key(|p| (p.0, p.1));

    // Walk the points, one account state per distinct timestamp. Per line: its value, its
    // base-currency MRR and ARR, and the date whose exchange rate it is converted at.
    let mut lines: Vec<Option<(LineVal, i64, i64, Timestamp)>> = vec![None; line_count];
    let mut raw_steps: Vec<(Timestamp, Walk)> = Vec::new();
    // (raw step, index in `raw.subs`): the events whose points changed their line's MRR or
    // whether it keeps the customer; a movement names those of the steps it groups.
    let mut sourced: Vec<(usize, usize)> = Vec::new();
    // Free or paused lines keep an account a customer only once it has paid.
    let mut ever_paid = false;
    let mut i = 0;
    while i < points.len() {
        let ts = points[i].0;
        let mut involuntary = false;
        let mut lost: Option<(i64, Option<Arc<str>>)> = None;
        while i < points.len() && points[i].0 == ts {
            let (_, _, li, ref v) = points[i];
            let old = lines[li].take();
            // A line is converted at the rate of the date it started paying (in this
            // currency): its price changes convert at that same rate, so exchange rates
            // moving never create movements, and the value is always its price x one rate.
            let rate_date = match &old {
                Some((o, _, _, d)) if o.native > 0 && o.currency == v.currency => *d,
                _ => ts,
            };
            let mut convert = |native: i64| {
                if native == 0 {
                    return 0;
                }
                cfg.fx.convert(native, v.currency, rate_date).unwrap_or_else(|| {
                    diags.push(missing_rate(v.currency, &cfg.fx));
                    native
                })
            };
            let (base, arr) = (convert(v.native), convert(v.native_arr));
            if !raw.sub_sources.is_empty()
                && old.as_ref().map_or((0, false), |(o, b, _, _)| (*b, o.keeps_customer))
                    != (base, v.keeps_customer)
            {
                sourced.push((raw_steps.len(), points[i].1));
            }
            let old_base = old.as_ref().map_or(0, |(_, b, _, _)| *b);
            involuntary |= v.involuntary && old_base > 0;
            if old_base > 0 && base == 0 && lost.as_ref().is_none_or(|(m, _)| old_base > *m) {
                lost = Some((old_base, v.cancel_reason.clone()));
            }
            lines[li] = Some((v.clone(), base, arr, rate_date));
            i += 1;
        }
        let mut w = Walk { involuntary, lost, ..Walk::default() };
        let mut best: Option<(i64, &Option<Arc<str>>)> = None;
        let mut kept = false;
        for (v, base, arr, _) in lines.iter().flatten() {
            w.mrr += base;
            w.arr += arr;
            if !v.pending_end {
                w.committed_mrr += base;
                w.committed_arr += arr;
            }
            // Line by line (not summed by currency), so that a line revalued at the rate
            // it was booked at gives back exactly its booked amount.
            if v.currency != cfg.fx.base && v.native != 0 {
                w.fx.push((v.currency, v.native, *base));
            }
            if v.service {
                w.service_mrr += base;
            }
            kept |= v.keeps_customer;
            w.seats += v.seats;
            if (*base > 0 || v.keeps_customer) && !w.held.contains(&v.product) {
                w.held.push(v.product.clone());
            }
            if *base > 0 {
                match w.products.iter_mut().find(|(p, _)| *p == v.product) {
                    Some((_, m)) => *m += base,
                    None => w.products.push((v.product.clone(), *base)),
                }
                if best.is_none_or(|(b, _)| *base > b) {
                    best = Some((*base, &v.plan));
                }
            }
        }
        ever_paid |= w.mrr > 0;
        w.customer = w.mrr > 0 || (kept && ever_paid);
        w.plan = best.and_then(|(_, p)| p.clone());
        raw_steps.push((ts, w));
    }

    // Group changes within the window and classify each group once.
    let mut steps = Vec::new();
    let mut movements = Vec::new();
    let mut prev = Walk::default();
    let mut ever_customer = false;
    let mut last_churn: Option<Timestamp> = None;
    let mut g = 0;
    let mut next_sourced = 0;
    while g < raw_steps.len() {
        let start = raw_steps[g].0;
        let mut end = g;
        let mut involuntary = raw_steps[g].1.involuntary;
        let mut lost = raw_steps[g].1.lost.clone();
        // Groups never cross a UTC day boundary, so the MRR reported at any day (and so at
        // any period boundary) is exactly what it was at that instant.
        while end + 1 < raw_steps.len()
            && raw_steps[end + 1].0.0 - start.0 <= cfg.grouping_window_secs * 1_000_000
            && raw_steps[end + 1].0.day() == start.day()
        {
            end += 1;
            involuntary |= raw_steps[end].1.involuntary;
            if let Some((m, r)) = &raw_steps[end].1.lost
                && lost.as_ref().is_none_or(|(best, _)| m > best)
            {
                lost = Some((*m, r.clone()));
            }
        }
        if raw_steps[end].0 > start {
            // A fold at an instant inside the group holds only its first part.
            rewrites.push((start, raw_steps[end].0));
        }
        let after = raw_steps[end].1.clone();
        g = end + 1;
        let mut orders: Vec<usize> = Vec::new();
        while next_sourced < sourced.len() && sourced[next_sourced].0 <= end {
            orders.push(sourced[next_sourced].1);
            next_sourced += 1;
        }
        let moved = movements.len();
        let mv = |kind, amount| Movement {
            ts: start,
            kind,
            amount,
            upsell: 0,
            cross_sell: 0,
            involuntary: false,
            cancel_reason: None,
            sources: Box::default(),
        };
        match (prev.customer, after.customer) {
            (false, true) => {
                let returning = ever_customer
                    && cfg.reactivation_window_days.is_none_or(|d| {
                        last_churn.is_some_and(|c| start.0 - c.0 <= d as i64 * DAY)
                    });
                movements.push(mv(
                    if returning { MovementKind::Reactivation } else { MovementKind::New },
                    after.mrr,
                ));
                ever_customer = true;
            }
            (true, false) => {
                // Invoices do not count here (a failed one shows as `past_due` on the line):
                // revenue-only reports do not read them, and must agree with full ones.
                movements.push(Movement {
                    involuntary,
                    cancel_reason: lost.and_then(|(_, r)| r),
                    ..mv(MovementKind::Churn, prev.mrr)
                });
                last_churn = Some(start);
            }
            (true, true) if after.mrr > prev.mrr => {
                let expansion = after.mrr - prev.mrr;
                let new_products: i64 = after
                    .products
                    .iter()
                    .filter(|(p, _)| !prev.held.contains(p))
                    .map(|(_, m)| *m)
                    .sum();
                let cross_sell = new_products.min(expansion);
                movements.push(Movement {
                    upsell: expansion - cross_sell,
                    cross_sell,
                    ..mv(MovementKind::Expansion, expansion)
                });
            }
            (true, true) if after.mrr < prev.mrr => movements.push(Movement {
                involuntary,
                ..mv(MovementKind::Contraction, prev.mrr - after.mrr)
            }),
            _ => {}
        }
        if movements.len() > moved && !orders.is_empty() {
            // In log order; an event can give two points at one instant (a cancellation
            // effective at once).
            orders.sort_unstable();
            orders.dedup();
            let m = movements.last_mut().expect("a movement was just pushed");
            m.sources = orders.iter().filter_map(|&o| raw.sub_sources.get(o)?.clone()).collect();
        }
        let changed = after.mrr != prev.mrr
            || after.arr != prev.arr
            || after.service_mrr != prev.service_mrr
            || after.customer != prev.customer
            || after.seats != prev.seats
            || after.plan != prev.plan
            || after.committed_mrr != prev.committed_mrr
            || after.committed_arr != prev.committed_arr
            || after.fx != prev.fx;
        if changed {
            steps.push(Step {
                ts: start,
                mrr: after.mrr,
                arr: after.arr,
                service_mrr: after.service_mrr,
                seats: after.seats,
                customer: after.customer,
                plan: after.plan.clone(),
                committed_mrr: after.committed_mrr,
                committed_arr: after.committed_arr,
                fx: after.fx.clone().into_boxed_slice(),
            });
        }
        prev = after;
    }

    // A renewal won is worth the line's ARR right after the follow-on term started.
    for r in renewals.iter_mut() {
        if let RenewalOutcome::Won { at, arr } = &mut r.outcome {
            let line =
                subs.iter().rfind(|s| s.2.subscription_id == r.subscription_id && s.0 <= *at);
            if let Some((ts, _, s)) = line {
                let native = line_arr(s);
                *arr = cfg.fx.convert(native, s.amount.currency, *ts).unwrap_or(native);
            }
        }
        if let Some((ts, _, s)) =
            subs.iter().rfind(|s| s.2.subscription_id == r.subscription_id && s.0 < r.due)
        {
            r.arr_due = cfg.fx.convert(r.arr_due, s.amount.currency, *ts).unwrap_or(r.arr_due);
        }
    }
    renewals.sort_by(|a, b| (a.due, &a.subscription_id).cmp(&(b.due, &b.subscription_id)));

    let mut attributes: Vec<(Timestamp, String, AttrValue)> = raw
        .attributes
        .decode()
        .filter(|(ts, _)| *ts <= as_of)
        .flat_map(|(ts, body)| {
            match body {
                EventBody::Account { attributes, .. } => attributes,
                _ => Vec::new(),
            }
            .into_iter()
            .map(move |(k, v)| (ts, k, v))
        })
        .collect();
    attributes.sort_by_key(|(ts, _, _)| *ts);
    let mut invoices: Vec<Invoice> = raw
        .invoices
        .decode()
        .filter(|(ts, _)| *ts <= as_of)
        .filter_map(|(ts, body)| match body {
            EventBody::Invoice { invoice_id, amount, status, .. } => Some(Invoice {
                ts,
                invoice_id,
                amount: cfg.fx.convert(amount.minor, amount.currency, ts).unwrap_or(amount.minor),
                status,
            }),
            _ => None,
        })
        .collect();
    invoices.sort_by_key(|i| i.ts);
    scheduled.sort();
    let name = raw.name.as_ref().filter(|(ts, _)| *ts <= as_of).map(|(_, n)| n.clone());
    let first_subscription = subs.iter().map(|s| s.0).min();
    let cs = crate::cs::fold(
        &raw.cs,
        as_of,
        |m, ts| cfg.fx.convert(m.minor, m.currency, ts).unwrap_or(m.minor),
        moves,
    );
    (
        AccountLedger {
            id: raw.id.clone(),
            name,
            attributes,
            steps,
            movements,
            renewals,
            invoices,
            cancellations_scheduled: scheduled,
            first_subscription,
            cs,
            rewrites,
            changes_at: (horizon != Timestamp::MAX).then_some(horizon),
        },
        diags,
    )
}
