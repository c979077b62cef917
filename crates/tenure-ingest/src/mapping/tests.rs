//! The mapping format: mappings and inputs in, events, rejections and errors out.

use super::*;
use expect_test::{Expect, expect};
use tenure_core::time::Timestamp;

mod shipped;

fn cfg() -> IngestConfig {
    IngestConfig::defaults(Some(Timestamp::parse("2025-01-01T00:00:00Z").unwrap()))
}

/// Every row's outcome, one per line: `LINE: TIMESTAMP ACCOUNT BODY` or `LINE: FIELD: REASON`,
/// then the number of skipped rows when there are some.
fn render<R: Read>(mut rows: MappedRows<R>) -> String {
    let mut out = String::new();
    while let Some((line, row)) = rows.next_row(&cfg()) {
        match row {
            Ok(e) => {
                let account = e.account.as_deref().unwrap_or("-");
                let id = e.message_id.as_deref().map(|m| format!(" [{m}]")).unwrap_or_default();
                out += &format!("{line}: {} {account}{id} {:?}\n", e.ts, e.body);
            }
            Err(r) => out += &format!("{r}\n"),
        }
    }
    if rows.skipped() > 0 {
        out += &format!("skipped: {}\n", rows.skipped());
    }
    out
}

fn run(mapping: &str, input: &str, expect: Expect) {
    let m = Mapping::parse(mapping, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    let rows = m.open(input.trim_start_matches('\n').as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    expect.assert_eq(&render(rows));
}

fn mapping_err(mapping: &str, expect: Expect) {
    let e = Mapping::parse(mapping.trim_start_matches('\n'), "my-crm.toml").unwrap_err();
    expect.assert_eq(&e.to_string());
}

fn open_err(mapping: &str, input: &str, expect: Expect) {
    let m = Mapping::parse(mapping, "my-crm.toml").unwrap_or_else(|e| panic!("{e}"));
    match m.open(input.trim_start_matches('\n').as_bytes()) {
        Ok(_) => panic!("opened"),
        Err(e) => expect.assert_eq(&e.to_string()),
    }
}

const TICKETS: &str = r#"
type = "ticket"
[fields]
account_id = "Org"
ticket_id = "Id"
timestamp = "Created"
status = { from = "Status", map = { "New" = "opened", "Open" = "opened", "Solved" = "closed" } }
severity = { from = "Priority", default = "normal", map = { "P1" = "urgent", "P2" = "high", "P4" = "low" } }
"#;

#[test]
fn each_kind_of_mapping_error_names_its_line() {
    // Not TOML.
    mapping_err(
        r#"
type = "ticket"
[fields
account_id = "Org"
"#,
        expect!["my-crm.toml:2: unclosed table, expected `]`"],
    );
    mapping_err(
        r#"
type = "ticket"
[fields]
account_id = "Org"
ticket_id = "Id"
severty = "Priority"
"#,
        expect![[
            r#"my-crm.toml:5: unknown contract field "severty" (the fields of docs/events.md, or attributes.NAME)"#
        ]],
    );
    mapping_err(
        r#"
description = "x"
type = "tiket"
[fields]
account_id = "Org"
"#,
        expect![[
            r#"my-crm.toml:2: unknown event type "tiket" (expected account | contact | subscription | invoice | usage | ticket | survey_sent | survey_response | email | web_visit | touchpoint | milestone | success_objective | assessment | change_request | cost | alert | task | forecast_override)"#
        ]],
    );
    mapping_err(
        r#"
type = "ticket"
[fields]
account_id = "Org"

timestamp = { from = "Created", format = "dd/mm/yyyy" }
"#,
        expect![[
            r#"my-crm.toml:5: timestamp: date format "dd/mm/yyyy" has no %-directive (strftime-like, e.g. "%m/%d/%Y %H:%M"; or rfc3339, unix, unix_ms)"#
        ]],
    );
    mapping_err(
        r#"
type = "ticket"
[fields]
account_id = "Org"
timestamp = { from = "Created", format = ["%Y-%m-%d", "%d.%m.%Y %Q"] }
"#,
        expect![[
            r#"my-crm.toml:4: timestamp: date format "%d.%m.%Y %Q" is not a valid strftime-like format"#
        ]],
    );
    mapping_err(
        r#"
type = "ticket"

[fields]
ticket_id = "Id"
"#,
        expect![[
            r#"my-crm.toml:3: no account_id in [fields]: every event but cost belongs to an account; name the column that holds it (account_id = "COLUMN")"#
        ]],
    );
    mapping_err(
        r#"
[fields]
account_id = "Org"
"#,
        expect![[
            r#"my-crm.toml:1: no event type: add type = "account" (or another type of docs/events.md), or type = { from = "COLUMN", map = { ... } }"#
        ]],
    );
    // A misspelt key of a field's table.
    mapping_err(
        r#"
type = "ticket"
[fields]
account_id = "Org"
ticket_id = { form = "Id" }
"#,
        expect![[
            r#"my-crm.toml:4: ticket_id: unknown field `form`, expected one of `from`, `constant`, `template`, `map`, `default`, `format`, `utc_offset`, `optional`"#
        ]],
    );
    // A map to a value the contract refuses fails the mapping, not each row.
    mapping_err(
        r#"
type = "ticket"
[fields]
account_id = "Org"
status = { from = "State", map = { "Open" = "opened", "Escalated" = "escalated" } }
"#,
        expect![[
            r#"my-crm.toml:4: status: "escalated" is not a ticket status (expected opened | closed | reopened)"#
        ]],
    );
    mapping_err(
        r#"
type = { from = "Object", map = { "Company" = "account", "Person" = "person" } }
[fields]
account_id = "Org"
"#,
        expect![[
            r#"my-crm.toml:1: unknown event type "person" in the map (expected account | contact | subscription | invoice | usage | ticket | survey_sent | survey_response | email | web_visit | touchpoint | milestone | success_objective | assessment | change_request | cost | alert | task | forecast_override)"#
        ]],
    );
    mapping_err(
        r#"
type = "account"
[input]
format = "csv"
utc_offset = "CET"
[fields]
account_id = "Id"
"#,
        expect![[
            r#"my-crm.toml:4: utc_offset "CET" is not an offset such as "+02:00" or "-05:00""#
        ]],
    );
    mapping_err(
        r#"
type = "account"
[input]
format = "xml"
"#,
        expect![[r#"my-crm.toml:3: unknown input format "xml" (expected csv | jsonl | json)"#]],
    );
    mapping_err(
        r#"
type = "account"
[fields]
account_id = "Id"

[[skip]]
from = "Deleted"
in = ["true"]
not_in = ["false"]
"#,
        expect![[r#"my-crm.toml:5: a condition needs exactly one of `in` and `not_in`"#]],
    );
    mapping_err(
        r#"
type = "account"
[fields]
account_id = "Id"
name = { template = "{First Name} {Last Name" }
"#,
        expect![[
            r#"my-crm.toml:4: name: template "{First Name} {Last Name" has a { without its }"#
        ]],
    );
    mapping_err(
        r#"
type = "account"
[fields]
account_id = "Id"
"attributes.region" = { from = "Region", format = "%Y" }
"#,
        expect![[
            r#"my-crm.toml:4: attributes.region: format and utc_offset apply to dates (timestamp, term_start, term_end, cancel_at, period_start, period_end, due)"#
        ]],
    );
    mapping_err(
        r#"
type = "account"
[fields]
account_id = "Id"
type = "Kind"
"#,
        expect![[r#"my-crm.toml:4: the event type is the top-level `type`, not a field"#]],
    );
    mapping_err(
        r#"
type = "account"
[fields]
account_id = "Id"
"attributes.csm" = "Owner"
attributes.csm = "Owner Name"
"#,
        expect![[r#"my-crm.toml:4: attributes.csm is mapped twice"#]],
    );
    mapping_err(
        r#"
type = "account"
[fields]
account_id = { from = 3 }
"#,
        expect![[r#"my-crm.toml:3: account_id: a name or a list of names"#]],
    );
}

#[test]
fn value_maps_take_a_default_or_reject_unknown_values() {
    run(
        TICKETS,
        r#"
Id,Org,Created,Status,Priority
t1,acme,2024-03-01,New,P1
t2,acme,2024-03-02,solved,P3
t3,acme,2024-03-03,Escalated,P2
t4,acme,2024-03-04,Open,
"#,
        // Matching ignores case (solved); P3 is not in the map and takes the default; an
        // empty priority stays empty; Escalated has no default to fall back on.
        expect![[r#"
            2: 2024-03-01T00:00:00Z acme Ticket { ticket_id: "t1", status: Opened, category: None, severity: Some(Urgent), cost: None, csat: None }
            3: 2024-03-02T00:00:00Z acme Ticket { ticket_id: "t2", status: Closed, category: None, severity: Some(Normal), cost: None, csat: None }
            4: status (column "Status"): "Escalated" is not in the mapping's value map (known: New, Open, Solved)
            5: 2024-03-04T00:00:00Z acme Ticket { ticket_id: "t4", status: Opened, category: None, severity: None, cost: None, csat: None }
        "#]],
    );
}

#[test]
fn the_type_can_come_from_a_column_through_a_map() {
    run(
        r#"
type = { from = "Object", map = { "Company" = "account", "Milestone" = "milestone" } }
[fields]
account_id = "Org"
timestamp = "When"
name = "Name"
"#,
        r#"
Object,Org,When,Name
Company,acme,2024-01-01,Acme Inc
Milestone,acme,2024-02-01,first_value
Deal,acme,2024-03-01,Big one
"#,
        expect![[r#"
            2: 2024-01-01T00:00:00Z acme Account { name: Some("Acme Inc"), attributes: [] }
            3: 2024-02-01T00:00:00Z acme Milestone { name: "first_value" }
            4: type (column "Object"): "Deal" is not in the mapping's value map (known: Company, Milestone)
        "#]],
    );
}

#[test]
fn date_formats_with_offsets_and_unix_times() {
    let mapping = r#"
type = "milestone"
[input]
utc_offset = "+02:00"
[fields]
account_id = "Org"
name = { constant = "first_value" }
timestamp = { from = "When", format = ["%d/%m/%Y %H:%M", "%d/%m/%Y", "%Y-%m-%dT%H:%M:%S%z", "rfc3339"] }
"#;
    run(
        mapping,
        r#"
Org,When
a,15/03/2024 10:30
b,15/03/2024
c,2024-03-15T10:30:00-0500
d,2024-03-15T10:30:00Z
e,31/02/2024
f,15/03/1850
"#,
        // Naive dates are read at +02:00; a written offset wins; RFC 3339 passes through;
        // the range of the contract still holds.
        expect![[r#"
            2: 2024-03-15T08:30:00Z a Milestone { name: "first_value" }
            3: 2024-03-14T22:00:00Z b Milestone { name: "first_value" }
            4: 2024-03-15T15:30:00Z c Milestone { name: "first_value" }
            5: 2024-03-15T10:30:00Z d Milestone { name: "first_value" }
            6: timestamp (column "When"): cannot parse "31/02/2024" with formats %d/%m/%Y %H:%M or %d/%m/%Y or %Y-%m-%dT%H:%M:%S%z or rfc3339
            7: timestamp (column "When"): 1850-03-14T22:00:00Z is outside the supported range 1900-01-01T00:00:00Z..2200-01-01T00:00:00Z (every store of Tenure, Parquet's nanosecond timestamps included, holds it)
        "#]],
    );
    // One format, a field's own offset, Unix seconds and milliseconds.
    run(
        r#"
type = "milestone"
[fields]
account_id = "Org"
name = { constant = "first_value" }
timestamp = { from = "When", format = "%d/%m/%Y", utc_offset = "-05:00" }
due = { from = "Due", format = "unix" }
"#,
        "Org,When,Due\na,31/02/2024,\nb,01/03/2024,soon\nc,01/03/2024,1713418460\n",
        expect![[r#"
            2: timestamp (column "When"): cannot parse "31/02/2024" with format %d/%m/%Y
            3: due (column "Due"): cannot parse "soon" with format unix
            4: 2024-03-01T05:00:00Z c Milestone { name: "first_value" }
        "#]],
    );
    run(
        r#"
type = "task"
[input]
format = "jsonl"
[fields]
account_id = "org"
task_id = "id"
timestamp = { from = "at", format = "unix_ms" }
due = { from = "due", format = "unix" }
"#,
        r#"
{"org": "a", "id": "t1", "at": 1713418460123, "due": 1713418460.5}
{"org": "a", "id": "t2", "at": "1713418460123", "due": null}
"#,
        expect![[r#"
            1: 2024-04-18T05:34:20.123000Z a Task(TaskChange { task_id: "t1", status: None, rule: None, alert_id: None, title: None, owner: None, due: Some(Timestamp(1713418460500000)), note: None, root_cause: None, author: None })
            2: 2024-04-18T05:34:20.123000Z a Task(TaskChange { task_id: "t2", status: None, rule: None, alert_id: None, title: None, owner: None, due: None, note: None, root_cause: None, author: None })
        "#]],
    );
}

#[test]
fn json_paths_and_a_records_path() {
    let mapping = r#"
type = "account"
[input]
format = "json"
records = "data.items"
[fields]
account_id = "organization.id"
name = "organization.name"
timestamp = "created_at"
"attributes.health" = "custom_fields.health"
"attributes.first_tag" = "tags.0"
"attributes.enterprise" = "flags.enterprise"
"#;
    run(
        mapping,
        r#"
{"data": {"items": [
  {"organization": {"id": 42, "name": "Acme"}, "created_at": "2024-01-01", "custom_fields": {"health": "green"}, "tags": ["vip", "eu"], "flags": {"enterprise": true}},
  {"organization": {"id": "43"}, "created_at": "2024-01-02", "custom_fields": {"health": null}, "tags": []},
  {"organization": {"id": 44}, "created_at": "2024-01-03", "custom_fields": {"health": {"score": 3}}},
  "not an object",
  {"organization": null, "created_at": "2024-01-05"}
]}, "next_page": null}
"#,
        // Numbers and booleans read as their text; null and missing as empty; an object
        // where a value is expected rejects the row; records count from 1.
        expect![[r#"
            1: 2024-01-01T00:00:00Z 42 Account { name: Some("Acme"), attributes: [("enterprise", Str("true")), ("first_tag", Str("vip")), ("health", Str("green"))] }
            2: 2024-01-02T00:00:00Z 43 Account { name: None, attributes: [] }
            3: attributes.health (path "custom_fields.health"): is an object, not a value
            4: expected a JSON object
            5: account_id (path "organization.id"): missing required field
        "#]],
    );
    open_err(
        r#"
type = "account"
[input]
format = "json"
[fields]
account_id = "id"
"#,
        r#"{"tickets": [], "count": 0}"#,
        expect![[
            r#"the JSON document is an object, not an array of records: name the array with [input] records = "KEY" in the mapping (its keys: count, tickets)"#
        ]],
    );
    open_err(
        mapping,
        r#"{"data": {"items": {}}}"#,
        expect![[r#"records "data.items" of the JSON document is not an array"#]],
    );
    open_err(
        mapping,
        r#"{"data": []}"#,
        expect![[r#"the JSON document has no "data.items" (the mapping's records)"#]],
    );
    open_err(
        mapping,
        r#"{"data": "#,
        expect![[r#"malformed JSON: EOF while parsing a value at line 1 column 9"#]],
    );
}

#[test]
fn json_lines_count_lines_and_keys_with_dots_are_found() {
    run(
        r#"
type = "touchpoint"
[input]
format = "jsonl"
[fields]
account_id = "account.id"
kind = { constant = "call" }
note = "meta.note.text"
timestamp = "at"
"#,
        r#"
{"account.id": "a", "at": "2024-05-01", "meta": {"note.text": "renewal talk"}}

{"account": {"id": "b"}, "at": "2024-05-02"}
{"account": 
{"account": {"id": "c"}, "at": "2024-05-03T10:00:00+02:00"}
"#,
        expect![[r#"
            1: 2024-05-01T00:00:00Z a Touchpoint { kind: "call", sentiment: None, note: Some("renewal talk") }
            3: 2024-05-02T00:00:00Z b Touchpoint { kind: "call", sentiment: None, note: None }
            4: malformed JSON: EOF while parsing a value at line 1 column 12
            5: 2024-05-03T08:00:00Z c Touchpoint { kind: "call", sentiment: None, note: None }
        "#]],
    );
}

#[test]
fn constants_templates_and_the_first_non_empty_column() {
    run(
        r#"
type = "contact"
[fields]
account_id = ["Company Id", "Parent Company Id"]
contact_id = { template = "crm-{Id}" }
name = { template = "{First} {Last}" }
role = { constant = "champion" }
timestamp = { constant = "2024-01-01" }
"#,
        r#"
Id,First,Last,Company Id,Parent Company Id
1,Maya,Chen,acme,
2,,Ferreira,,acme-group
3,,,acme,
"#,
        expect![[r#"
            2: 2024-01-01T00:00:00Z acme Contact { contact_id: "crm-1", email: None, name: Some("Maya Chen"), role: Some(Champion), status: None }
            3: 2024-01-01T00:00:00Z acme-group Contact { contact_id: "crm-2", email: None, name: Some("Ferreira"), role: Some(Champion), status: None }
            4: 2024-01-01T00:00:00Z acme Contact { contact_id: "crm-3", email: None, name: None, role: Some(Champion), status: None }
        "#]],
    );
}

#[test]
fn a_csv_header_lacking_a_mapped_column_rejects_the_file() {
    open_err(
        TICKETS,
        "Id,Org,Status,Priority\nt1,acme,New,P1\n",
        expect![[
            r#"the CSV header has no column "Created" (the mapping's timestamp; my-crm.toml)"#
        ]],
    );
    open_err(
        r#"
type = "contact"
[fields]
account_id = ["Company", "Account"]
contact_id = "Id"
"#,
        "Id,Name\n1,x\n",
        expect![[
            r#"the CSV header has no column "Company" or "Account" (the mapping's account_id; my-crm.toml)"#
        ]],
    );
    open_err(
        r#"
type = "contact"
[fields]
account_id = "Company"
contact_id = "Id"
name = { template = "{First} {Last}" }
"#,
        "Id,Company,First\n1,x,y\n",
        expect![[r#"the CSV header has no column "Last" (the mapping's name; my-crm.toml)"#]],
    );
    open_err(
        TICKETS,
        "Id,Org,Created,Status,Priority,Org\nt1,acme,2024-01-01,New,P1,acme\n",
        expect![[r#"column "Org" appears more than once in the CSV header"#]],
    );
    // Optional columns may be missing; names match ignoring case when none matches
    // exactly; a semicolon-separated file names its delimiter.
    run(
        r#"
type = "account"
[input]
delimiter = ";"
[fields]
account_id = "Id"
timestamp = "Created"
"attributes.region" = { from = "Region", optional = true }
"attributes.tier" = "Tier"
"#,
        "ID;CREATED;tier\nacme;2024-01-01;gold\n",
        expect![[r#"
            2: 2024-01-01T00:00:00Z acme Account { name: None, attributes: [("tier", Str("gold"))] }
        "#]],
    );
}

#[test]
fn csv_rows_keep_their_file_lines_and_the_contract_rules() {
    run(
        TICKETS,
        "Id,Org,Created,Status,Priority\r\nt1,acme,2024-03-01,New,P1\r\n\r\n\"t\n2\",acme,2024-03-02,New,P1\r\nt3,,2024-03-03,New,P1\r\nt4,acme,2030-01-01,New,P1\r\nt5,acme,2024-03-05,New,P1,extra\r\n",
        // A quoted line break and a blank line count; a missing account, a time too far in
        // the future and an extra cell are refused as in any import.
        expect![[r#"
            2: 2024-03-01T00:00:00Z acme Ticket { ticket_id: "t1", status: Opened, category: None, severity: Some(Urgent), cost: None, csat: None }
            4: ticket_id (column "Id"): must not contain control characters (line breaks, tabs...)
            6: account_id (column "Org"): missing required field
            7: timestamp (column "Created"): 2030-01-01T00:00:00Z is 1826.0 days in the future (beyond the allowed skew of 1 day)
            8: row has 6 cells but the header has 5
        "#]],
    );
}

#[test]
fn skip_rules_and_further_events_of_a_row() {
    let mapping = r#"
type = "ticket"
[input]
format = "jsonl"
[fields]
account_id = "org"
ticket_id = "id"
timestamp = "created"
status = { constant = "opened" }

[[skip]]
from = "status"
in = ["Deleted", "spam"]

[[also]]
when = { from = "status", in = ["solved"] }
fields = { status = { constant = "closed" }, timestamp = "solved_at" }

[[also]]
when = { from = "reopened", not_in = [""] }
fields.status = { constant = "reopened" }
fields.timestamp = "reopened"
"#;
    run(
        mapping,
        r#"
{"id": "t1", "org": "a", "created": "2024-03-01", "status": "open"}
{"id": "t2", "org": "a", "created": "2024-03-01", "status": "solved", "solved_at": "2024-03-02"}
{"id": "t3", "org": "a", "created": "2024-03-01", "status": "deleted"}
{"id": "t4", "org": "a", "created": "2024-03-01", "status": "solved", "solved_at": "2024-03-02", "reopened": "2024-03-04"}
{"id": "t5", "org": "a", "created": "2024-03-01", "status": "solved", "solved_at": "later"}
"#,
        // A row's events are all stored or it is rejected once, whichever event fails.
        expect![[r#"
            1: 2024-03-01T00:00:00Z a Ticket { ticket_id: "t1", status: Opened, category: None, severity: None, cost: None, csat: None }
            2: 2024-03-01T00:00:00Z a Ticket { ticket_id: "t2", status: Opened, category: None, severity: None, cost: None, csat: None }
            2: 2024-03-02T00:00:00Z a Ticket { ticket_id: "t2", status: Closed, category: None, severity: None, cost: None, csat: None }
            4: 2024-03-01T00:00:00Z a Ticket { ticket_id: "t4", status: Opened, category: None, severity: None, cost: None, csat: None }
            4: 2024-03-02T00:00:00Z a Ticket { ticket_id: "t4", status: Closed, category: None, severity: None, cost: None, csat: None }
            4: 2024-03-04T00:00:00Z a Ticket { ticket_id: "t4", status: Reopened, category: None, severity: None, cost: None, csat: None }
            5: timestamp (path "solved_at"): not an RFC 3339 timestamp or YYYY-MM-DD date: "later"
            skipped: 1
        "#]],
    );
}

#[test]
fn attributes_quoted_or_as_a_dotted_key() {
    run(
        r#"
type = "account"
[fields]
account_id = "Id"
timestamp = { constant = "2024-01-01" }
"attributes.industry" = "Industry"
attributes.csm = { from = "Owner" }
attributes.employees = "Employees"
"#,
        "Id,Industry,Owner,Employees\nacme,Retail,Dana,250\nbeta,,,\n",
        expect![[r#"
            2: 2024-01-01T00:00:00Z acme Account { name: None, attributes: [("csm", Str("Dana")), ("employees", Str("250")), ("industry", Str("Retail"))] }
            3: 2024-01-01T00:00:00Z beta Account { name: None, attributes: [] }
        "#]],
    );
}
