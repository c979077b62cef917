//! Round-trip and robustness tests of the log record codec.

use super::*;
use proptest::prelude::*;

fn usd(minor: i64) -> Money {
    Money { minor, currency: Currency::USD }
}

/// One event of every kind, with optional fields both set and unset.
pub(crate) fn samples() -> Vec<Event> {
    let t = Timestamp::parse("2024-03-01T10:00:00.25Z").unwrap();
    let ev = |body| Event { ts: t, account: Some("acme".into()), message_id: None, body };
    let mut v = vec![
        ev(EventBody::Account {
            name: Some("Acme".into()),
            attributes: vec![
                ("segment".into(), AttrValue::Str("smb".into())),
                ("employees".into(), AttrValue::Num("120".into())),
                ("vip".into(), AttrValue::Bool(true)),
            ],
        }),
        ev(EventBody::Account { name: None, attributes: vec![] }),
        ev(EventBody::Contact {
            contact_id: "c1".into(),
            email: Some("a@b.c".into()),
            name: None,
            role: Some(ContactRole::Champion),
            status: Some(ContactStatus::Left),
        }),
        ev(EventBody::Subscription(Box::new(Subscription {
            subscription_id: "s1".into(),
            product: Some("platform".into()),
            plan: None,
            kind: LineKind::Service,
            quantity: 25,
            amount: usd(1_200_050),
            interval_months: 12,
            status: SubStatus::PastDue,
            term_start: Some(t),
            term_end: None,
            cancel_reason: Some("price".into()),
            cancel_at: Some(t.add_days(30)),
        }))),
        ev(EventBody::Invoice {
            invoice_id: "i1".into(),
            amount: usd(99),
            status: InvoiceStatus::Refunded,
            period_start: Some(t),
            period_end: Some(t.add_months(1)),
        }),
        ev(EventBody::Usage {
            user_id: "u1".into(),
            event: "login".into(),
            feature: None,
            quantity: 1.5,
        }),
        ev(EventBody::Ticket {
            ticket_id: "t1".into(),
            status: TicketStatus::Reopened,
            category: Some(TicketCategory::Defect),
            severity: None,
            cost: Some(usd(5000)),
            csat: Some(9),
        }),
        ev(EventBody::SurveySent { survey: SurveyKind::Nps, contact_id: Some("c1".into()) }),
        ev(EventBody::SurveyResponse {
            survey: SurveyKind::Success,
            contact_id: None,
            score: SurveyScore::Success(Sentiment::Negative),
            comment: Some("<script>alert(1)</script>".into()),
        }),
        ev(EventBody::SurveyResponse {
            survey: SurveyKind::Nps,
            contact_id: None,
            score: SurveyScore::Nps(0),
            comment: None,
        }),
        ev(EventBody::Email {
            contact_id: None,
            campaign: Some("q1".into()),
            action: EmailAction::Clicked,
        }),
        ev(EventBody::WebVisit {
            contact_id: Some("c2".into()),
            section: Section::Docs,
            page: Some("/api".into()),
        }),
        ev(EventBody::Touchpoint {
            kind: "qbr".into(),
            sentiment: Some(Sentiment::Positive),
            note: None,
        }),
        ev(EventBody::Milestone { name: "first_value".into() }),
        ev(EventBody::SuccessObjective {
            objective_id: "o1".into(),
            status: ObjectiveStatus::Achieved,
            value: Some(usd(1)),
        }),
        ev(EventBody::Assessment {
            relationship: Some(4),
            strategic_importance: None,
            author: Some("kim".into()),
        }),
        ev(EventBody::ChangeRequest { request_id: "r1".into(), status: RequestStatus::Done }),
        ev(EventBody::Alert {
            alert_id: "al-1".into(),
            rule: "detractor".into(),
            severity: Severity::High,
            message: Some("NPS 3 from kim".into()),
        }),
        ev(EventBody::Task(Box::new(TaskChange {
            task_id: "k-1".into(),
            status: Some(TaskStatus::Done),
            rule: Some("detractor".into()),
            alert_id: None,
            title: Some("Call kim".into()),
            owner: Some("sam".into()),
            due: Some(t.add_days(3)),
            note: Some("done".into()),
            root_cause: Some("product_gap".into()),
            author: None,
        }))),
        ev(EventBody::ForecastOverride {
            subscription_id: Some("s1".into()),
            category: ForecastCategory::AtRisk,
            amount: Some(Money { minor: 1_200_050, currency: Currency::parse("EUR").unwrap() }),
            reason: Some("budget cut".into()),
            author: Some("sam".into()),
        }),
        ev(EventBody::ForecastOverride {
            subscription_id: None,
            category: ForecastCategory::Commit,
            amount: None,
            reason: None,
            author: None,
        }),
    ];
    v.push(Event {
        ts: Timestamp(-5),
        account: None,
        message_id: Some("m-1".into()),
        body: EventBody::Cost {
            category: CostCategory::Retention,
            amount: Money { minor: 1000, currency: Currency::parse("JPY").unwrap() },
            period_start: t,
            period_end: t.add_months(1),
        },
    });
    v
}

#[test]
fn every_kind_round_trips() {
    let samples = samples();
    let kinds: std::collections::BTreeSet<_> = samples.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds.len(), EventKind::ALL.len(), "a sample of every kind");
    for e in samples {
        let mut buf = Vec::new();
        encode(&e, &mut buf);
        assert_eq!(decode(&buf).unwrap(), e);
        assert_eq!(decode_usage(&buf).is_ok(), e.kind() == EventKind::Usage, "{e:?}");
        let (kind, ts, account) = peek(&buf).unwrap();
        assert_eq!((kind, ts, account), (e.kind(), e.ts, e.account.as_deref()));
        // The body alone (how a fold's builder keeps it), and not as another kind's.
        let mut body = Vec::new();
        encode_body(&e.body, &mut body);
        assert_eq!(decode_body_of(e.kind(), &body).unwrap(), e.body);
        body.push(0);
        assert!(decode_body_of(e.kind(), &body).is_err(), "{e:?}: trailing bytes");
    }
}

proptest! {
    #[test]
    fn truncated_or_damaged_records_are_errors_not_panics(i in 0usize..18, cut in 0usize..200, flip in 0usize..200, bit in 0u8..8) {
        let e = &samples()[i];
        let mut buf = Vec::new();
        encode(e, &mut buf);
        if cut < buf.len() {
            prop_assert!(decode(&buf[..cut]).is_err());
            prop_assert!(decode_usage(&buf[..cut]).is_err());
        }
        let mut damaged = buf.clone();
        let f = flip % damaged.len();
        damaged[f] ^= 1 << bit;
        // Neither panics, the borrowed decoder refuses what the other refuses, and what it
        // takes the other takes, with the same fields.
        match (decode(&damaged), decode_usage(&damaged)) {
            (Err(_), u) => prop_assert!(u.is_err()),
            (Ok(e), Ok(u)) => {
                let EventBody::Usage { user_id, event, feature, quantity } = &e.body else {
                    return Err(TestCaseError::fail(format!("{e:?} read as usage")));
                };
                prop_assert_eq!((u.ts, u.account, u.user_id, u.event), (e.ts, e.account.as_deref(), user_id.as_str(), event.as_str()));
                prop_assert_eq!(u.feature, feature.as_deref());
                prop_assert_eq!(u.quantity.to_bits(), quantity.to_bits());
            }
            (Ok(_), Err(_)) => {}
        }
    }

    #[test]
    fn usage_round_trips(user in ".{0,20}", event in "[a-z_]{1,12}", q in 0.0f64..1e9, ts in any::<i64>(), mid in proptest::option::of(".{1,30}"), account in proptest::option::of(".{0,12}"), feature in proptest::option::of(".{0,12}")) {
        let e = Event {
            ts: Timestamp(ts),
            account,
            message_id: mid,
            body: EventBody::Usage { user_id: user, event, feature, quantity: q },
        };
        let mut buf = Vec::new();
        encode(&e, &mut buf);
        prop_assert_eq!(decode(&buf).unwrap(), e.clone());
        let EventBody::Usage { user_id, event, feature, quantity } = &e.body else { unreachable!() };
        let borrowed = UsageRef {
            ts: e.ts,
            account: e.account.as_deref(),
            user_id,
            event,
            feature: feature.as_deref(),
            quantity: *quantity,
        };
        prop_assert_eq!(decode_usage(&buf).unwrap(), borrowed);
    }
}
