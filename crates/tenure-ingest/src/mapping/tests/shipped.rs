//! The shipped mappings on exports written with each vendor's documented column names
//! (`tests/fixtures/mappings/`), a bad row or two in each.

use super::*;

fn shipped_run(name: &str, input: &str, expect: Expect) {
    let m = shipped(name).expect("shipped").unwrap_or_else(|e| panic!("{e}"));
    let rows = m.open(input.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    expect.assert_eq(&render(rows));
}

#[test]
fn every_shipped_mapping_parses_and_describes_itself() {
    for (name, _) in SHIPPED {
        let m = shipped(name).unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert!(!m.description().is_empty(), "{name}");
        assert!(!m.description().contains('\n'), "{name}: one line");
    }
    assert!(shipped("hubspot-deals").is_none());
}

#[test]
fn hubspot_companies() {
    shipped_run(
        "hubspot-companies",
        include_str!("../../../tests/fixtures/mappings/hubspot-companies.csv"),
        expect![[r#"
            2: 2024-05-02T16:45:00Z 8836126339 Account { name: Some("Acme Logistics"), attributes: [("city", Str("Boston")), ("country", Str("United States")), ("csm", Str("Dana Whitfield")), ("employees", Str("250")), ("industry", Str("Transportation/Trucking/Railroad")), ("lifecycle_stage", Str("Customer"))] }
            3: 2023-06-01T08:00:00Z 8836126340 Account { name: Some("Borealis Health"), attributes: [("city", Str("Toronto")), ("country", Str("Canada")), ("csm", Str("Sam Ortiz")), ("employees", Str("1200")), ("industry", Str("Hospital & Health Care")), ("lifecycle_stage", Str("Customer"))] }
            4: 2024-02-29T10:00:00Z 8836126341 Account { name: Some("Cobalt\nRetail"), attributes: [("lifecycle_stage", Str("Lead"))] }
            6: timestamp (column "Create Date"): cannot parse "31/02/2024 10:00" with formats %Y-%m-%d %H:%M or %Y-%m-%d %H:%M:%S or %Y-%m-%d
            7: account_id (column "Record ID"): missing required field
            8: 2024-01-09T09:00:30Z 8836126343 Account { name: Some("Ember Analytics"), attributes: [("city", Str("Lyon")), ("country", Str("France")), ("csm", Str("Sam Ortiz")), ("employees", Str("12")), ("industry", Str("Computer Software")), ("lifecycle_stage", Str("Customer"))] }
        "#]],
    );
}

#[test]
fn hubspot_contacts() {
    shipped_run(
        "hubspot-contacts",
        include_str!("../../../tests/fixtures/mappings/hubspot-contacts.csv"),
        expect![[r#"
            2: 2023-02-15T10:00:00Z 8836126339 Contact { contact_id: "51", email: Some("maya.chen@acme-logistics.example"), name: Some("Maya Chen"), role: Some(Champion), status: None }
            3: 2023-02-20T15:30:00Z 8836126339 Contact { contact_id: "52", email: Some("luis.ferreira@acme-logistics.example"), name: Some("Luis Ferreira"), role: Some(ExecutiveSponsor), status: None }
            4: 2023-06-03T09:00:00Z 8836126340 Contact { contact_id: "53", email: Some("ana@borealis-health.example"), name: Some("Ana"), role: Some(Other), status: None }
            6: timestamp (column "Create Date"): cannot parse "yesterday" with formats %Y-%m-%d %H:%M or %Y-%m-%d %H:%M:%S or %Y-%m-%d
            7: 2024-01-10T08:00:00Z 8836126343 Contact { contact_id: "56", email: Some("raj@ember-analytics.example"), name: Some("Raj Patel"), role: None, status: None }
            skipped: 1
        "#]],
    );
}

#[test]
fn salesforce_accounts() {
    shipped_run(
        "salesforce-accounts",
        include_str!("../../../tests/fixtures/mappings/salesforce-accounts.csv"),
        expect![[r#"
            2: 2024-05-02T16:45:12Z 0015g00000AbCdEAAV Account { name: Some("Acme Logistics"), attributes: [("account_type", Str("Customer - Direct")), ("annual_revenue", Str("52000000")), ("country", Str("United States")), ("csm", Str("0055g00000XyZ12AAB")), ("employees", Str("250")), ("industry", Str("Transportation")), ("state", Str("MA"))] }
            3: 2023-09-01T12:00:00Z 0015g00000AbCdFAAV Account { name: Some("Acme Logistics EMEA"), attributes: [("account_type", Str("Customer - Channel")), ("country", Str("Germany")), ("csm", Str("0055g00000XyZ12AAB")), ("employees", Str("40")), ("industry", Str("Transportation")), ("parent_account_id", Str("0015g00000AbCdEAAV"))] }
            5: timestamp (column "LastModifiedDate"): cannot parse "2024-13-01T00:00:00.000Z" with formats rfc3339 or %Y-%m-%dT%H:%M:%S%.f%z
            skipped: 1
        "#]],
    );
}

#[test]
fn salesforce_contacts() {
    shipped_run(
        "salesforce-contacts",
        include_str!("../../../tests/fixtures/mappings/salesforce-contacts.csv"),
        expect![[r#"
            2: 2024-03-01T08:00:00Z 0015g00000AbCdEAAV Contact { contact_id: "0035g00000Qq1AAAAZ", email: Some("maya.chen@acme-logistics.example"), name: Some("Maya Chen"), role: None, status: None }
            3: 2023-09-02T09:00:00Z 0015g00000AbCdFAAV Contact { contact_id: "0035g00000Qq1BAAAZ", email: None, name: Some("Schmidt"), role: None, status: None }
            5: contact_id (column "Id"): missing required field
            skipped: 1
        "#]],
    );
}

#[test]
fn zendesk_tickets() {
    shipped_run(
        "zendesk-tickets",
        include_str!("../../../tests/fixtures/mappings/zendesk-tickets.json"),
        expect![[r#"
            1: 2024-03-04T09:12:00Z 509974 Ticket { ticket_id: "35436", status: Opened, category: Some(Defect), severity: Some(High), cost: None, csat: None }
            1: 2024-03-05T17:40:00Z 509974 Ticket { ticket_id: "35436", status: Closed, category: Some(Defect), severity: Some(High), cost: None, csat: None }
            2: 2024-03-10T14:00:00Z 509974 Ticket { ticket_id: "35437", status: Opened, category: Some(HowTo), severity: None, cost: None, csat: None }
            3: 2024-03-11T08:30:00Z 509975 Ticket { ticket_id: "35438", status: Opened, category: None, severity: Some(Urgent), cost: None, csat: None }
            3: 2024-03-20T08:30:00Z 509975 Ticket { ticket_id: "35438", status: Closed, category: None, severity: Some(Urgent), cost: None, csat: None }
            5: timestamp (path "created_at"): not an RFC 3339 timestamp or YYYY-MM-DD date: "March 13th"
            6: 2024-03-14T10:00:00Z 509975 Ticket { ticket_id: "35441", status: Opened, category: Some(Other), severity: Some(Normal), cost: None, csat: None }
            skipped: 1
        "#]],
    );
}

#[test]
fn delighted_responses() {
    shipped_run(
        "delighted-responses",
        include_str!("../../../tests/fixtures/mappings/delighted-responses.json"),
        expect![[r#"
            1: 2024-04-18T05:34:20Z 8836126339 [delighted-response-1] SurveyResponse { survey: Nps, contact_id: Some("10"), score: Nps(9), comment: Some("Great support team") }
            2: 2024-04-19T05:34:20Z 8836126340 [delighted-response-2] SurveyResponse { survey: Nps, contact_id: Some("11"), score: Nps(3), comment: None }
            4: score (path "score"): 11 is out of range 0..=10
            5: account_id (path "person_properties.customer_id"): missing required field
            6: 2024-04-23T05:34:20Z 8836126343 [delighted-response-6] SurveyResponse { survey: Nps, contact_id: Some("15"), score: Nps(10), comment: Some("Love it\nespecially the reports") }
            skipped: 1
        "#]],
    );
}
