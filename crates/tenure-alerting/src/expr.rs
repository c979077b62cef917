//! The rule expression language: conditions people write over an account's features and
//! their trends, e.g. `usage_change(60) <= -30% and mrr_change(60) >= 0`. An expression is
//! parsed and type-checked when the rules load (an error names the column and the reason);
//! it is evaluated with SQL's three-valued logic: a comparison with a missing value is
//! unknown, and a rule fires only when its condition is true.

use std::fmt;
use tenure_health::features::{self, DEFS};

/// The longest expression accepted, in bytes, and the deepest nesting.
pub const MAX_LEN: usize = 2000;
const MAX_DEPTH: usize = 48;
/// The longest window a trend reads, days.
pub const MAX_WINDOW: i64 = 365;

/// What an expression reads of an account, each once per evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Term {
    /// A numeric health feature (`features::DEFS`), as of the evaluation.
    Feature(usize),
    /// The health score (0-100) of the account's scorecard.
    Health,
    /// The saved model's churn probability (0-1).
    ChurnProbability,
    Plan,
    Segment,
    /// Usage events in the last N whole days.
    Usage(i64),
    /// Usage events in the last N days on the N days before, as a relative change.
    UsageChange(i64),
    /// MRR now on MRR N days ago, as a relative change.
    MrrChange(i64),
    /// Tickets opened in the last N days.
    Tickets(i64),
    /// Touchpoints in the last N days.
    Touchpoints(i64),
}

impl Term {
    fn ty(self) -> Type {
        match self {
            Term::Plan | Term::Segment => Type::Text,
            _ => Type::Num,
        }
    }

    /// Whether its value reads best as a signed percentage.
    fn is_change(self) -> bool {
        match self {
            Term::UsageChange(_) | Term::MrrChange(_) => true,
            Term::Feature(i) => {
                matches!(DEFS[i].risky, features::Risky::Decline) && DEFS[i].name != "nps_change"
            }
            _ => false,
        }
    }

    /// The days of daily usage it needs kept.
    pub fn usage_days(self) -> i64 {
        match self {
            Term::Usage(d) => d,
            Term::UsageChange(d) => 2 * d,
            _ => 0,
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Term::Feature(i) => f.write_str(DEFS[*i].name),
            Term::Health => f.write_str("health"),
            Term::ChurnProbability => f.write_str("churn_probability"),
            Term::Plan => f.write_str("plan"),
            Term::Segment => f.write_str("segment"),
            Term::Usage(d) => write!(f, "usage({d})"),
            Term::UsageChange(d) => write!(f, "usage_change({d})"),
            Term::MrrChange(d) => write!(f, "mrr_change({d})"),
            Term::Tickets(d) => write!(f, "tickets({d})"),
            Term::Touchpoints(d) => write!(f, "touchpoints({d})"),
        }
    }
}

/// A term's value: a number (`NaN` when missing) or a text (`None` when missing).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Num(f64),
    Text(Option<String>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Num(x) if !x.is_finite() => f.write_str("unknown"),
            Value::Num(x) if x.fract() == 0.0 => write!(f, "{x:.0}"),
            Value::Num(x) => {
                let s = format!("{x:.2}");
                f.write_str(s.trim_end_matches('0').trim_end_matches('.'))
            }
            Value::Text(None) => f.write_str("unknown"),
            Value::Text(Some(s)) => write!(f, "{s:?}"),
        }
    }
}

/// A trend function: its name, the term it reads for a window, what it means.
type Trend = (&'static str, fn(i64) -> Term, &'static str);

/// Functions that read a trend over a window of days.
const TRENDS: &[Trend] = &[
    ("usage", Term::Usage, "usage events in the last N days"),
    ("usage_change", Term::UsageChange, "usage in the last N days on the N before"),
    ("mrr_change", Term::MrrChange, "MRR now on MRR N days ago"),
    ("tickets", Term::Tickets, "tickets opened in the last N days"),
    ("touchpoints", Term::Touchpoints, "touchpoints in the last N days"),
];

/// Functions of numbers.
const MATHS: &[(&str, usize)] = &[("abs", 1), ("min", 2), ("max", 2)];

/// Names that read one value.
fn name_term(name: &str) -> Option<Term> {
    match name {
        "health" => Some(Term::Health),
        "churn_probability" => Some(Term::ChurnProbability),
        "plan" => Some(Term::Plan),
        "segment" => Some(Term::Segment),
        _ => DEFS.iter().position(|d| d.name == name).map(Term::Feature),
    }
}

/// Every name and function an expression may use, for error messages and the docs.
pub fn vocabulary() -> Vec<&'static str> {
    let mut v: Vec<&str> = vec!["health", "churn_probability", "plan", "segment"];
    v.extend(DEFS.iter().map(|d| d.name));
    v.extend(TRENDS.iter().map(|t| t.0));
    v.extend(MATHS.iter().map(|m| m.0));
    v
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {reason}")]
pub struct ExprError {
    /// 1-based, in characters.
    pub column: usize,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Num,
    Bool,
    Text,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Num => "a number",
            Type::Bool => "a condition",
            Type::Text => "a text",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Num(f64),
    Text(String),
    Bool(bool),
    /// The term at this index of [`Expr::terms`].
    Read(usize),
    Neg(Box<Node>),
    Not(Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    Cmp(Cmp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Abs(Box<Node>),
    Min(Box<Node>, Box<Node>),
    Max(Box<Node>, Box<Node>),
}

/// A compiled condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub source: String,
    root: Node,
    /// What it reads, in order of first appearance (no repeats).
    pub terms: Vec<Term>,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64, bool),
    Ident(String),
    Text(String),
    Op(&'static str),
    End,
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |i: usize, reason: String| ExprError { column: i + 1, reason };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let v: f64 =
                text.parse().map_err(|_| err(start, format!("{text:?} is not a number")))?;
            let pct = chars.get(i) == Some(&'%');
            if pct {
                i += 1;
            }
            if chars.get(i).is_some_and(|c| c.is_alphanumeric() || *c == '_') {
                return Err(err(
                    i,
                    "a number runs into a name: put a space or an operator between".into(),
                ));
            }
            out.push((Tok::Num(if pct { v / 100.0 } else { v }, pct), start));
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), start));
            continue;
        }
        if c == '"' {
            let close = chars[i + 1..].iter().position(|c| *c == '"');
            let Some(n) = close else {
                return Err(err(start, "a text without its closing quote".into()));
            };
            out.push((Tok::Text(chars[i + 1..i + 1 + n].iter().collect()), start));
            i += n + 2;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op = match two.as_str() {
            "<=" => Some("<="),
            ">=" => Some(">="),
            "==" => Some("=="),
            "!=" => Some("!="),
            "&&" | "||" => {
                return Err(err(
                    start,
                    format!("write {} instead of {two}", if two == "&&" { "and" } else { "or" }),
                ));
            }
            _ => None,
        };
        if let Some(op) = op {
            out.push((Tok::Op(op), start));
            i += 2;
            continue;
        }
        let op = match c {
            '<' => "<",
            '>' => ">",
            '+' => "+",
            '-' => "-",
            '*' => "*",
            '/' => "/",
            '(' => "(",
            ')' => ")",
            ',' => ",",
            '=' => return Err(err(start, "write == to compare for equality".into())),
            '!' => return Err(err(start, "write not instead of !".into())),
            _ => return Err(err(start, format!("unexpected character {c:?}"))),
        };
        out.push((Tok::Op(op), start));
        i += 1;
    }
    out.push((Tok::End, chars.len()));
    Ok(out)
}

/// The closest known name, for "did you mean".
fn closest(name: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for j in 0..b.len() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != b[j])).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    vocabulary()
        .into_iter()
        .map(|v| (distance(name, v), v))
        .filter(|(d, v)| *d <= 3.max(v.len() / 4))
        .min()
        .map(|x| x.1)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    depth: usize,
    terms: Vec<Term>,
}

type Typed = (Node, Type, usize);

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at].0
    }

    fn col(&self) -> usize {
        self.toks[self.at].1
    }

    fn err<T>(&self, column: usize, reason: String) -> Result<T, ExprError> {
        Err(ExprError { column: column + 1, reason })
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(x) if x == w)
    }

    fn expect_op(&mut self, op: &str, what: &str) -> Result<(), ExprError> {
        if self.is_op(op) {
            self.at += 1;
            Ok(())
        } else {
            self.err(self.col(), format!("expected {op:?} {what}, found {}", self.describe()))
        }
    }

    fn describe(&self) -> String {
        match self.peek() {
            Tok::End => "the end".into(),
            Tok::Num(..) => "a number".into(),
            Tok::Ident(x) => format!("{x:?}"),
            Tok::Text(_) => "a text".into(),
            Tok::Op(o) => format!("{o:?}"),
        }
    }

    fn want(&self, got: &Typed, ty: Type, why: &str) -> Result<(), ExprError> {
        if got.1 == ty {
            Ok(())
        } else {
            self.err(got.2, format!("{why} needs {}, this is {}", ty.as_str(), got.1.as_str()))
        }
    }

    fn nest(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(self.col(), format!("nested more than {MAX_DEPTH} deep"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Typed, ExprError> {
        self.nest()?;
        let mut left = self.and()?;
        while self.is_word("or") {
            self.at += 1;
            let right = self.and()?;
            self.want(&left, Type::Bool, "or")?;
            self.want(&right, Type::Bool, "or")?;
            left = (Node::Or(Box::new(left.0), Box::new(right.0)), Type::Bool, left.2);
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Result<Typed, ExprError> {
        let mut left = self.not()?;
        while self.is_word("and") {
            self.at += 1;
            let right = self.not()?;
            self.want(&left, Type::Bool, "and")?;
            self.want(&right, Type::Bool, "and")?;
            left = (Node::And(Box::new(left.0), Box::new(right.0)), Type::Bool, left.2);
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Typed, ExprError> {
        if self.is_word("not") {
            let col = self.col();
            self.at += 1;
            self.nest()?;
            let inner = self.not()?;
            self.depth -= 1;
            self.want(&inner, Type::Bool, "not")?;
            return Ok((Node::Not(Box::new(inner.0)), Type::Bool, col));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Typed, ExprError> {
        let left = self.sum()?;
        let op = match self.peek() {
            Tok::Op("<") => Cmp::Lt,
            Tok::Op("<=") => Cmp::Le,
            Tok::Op(">") => Cmp::Gt,
            Tok::Op(">=") => Cmp::Ge,
            Tok::Op("==") => Cmp::Eq,
            Tok::Op("!=") => Cmp::Ne,
            _ => return Ok(left),
        };
        let op_col = self.col();
        self.at += 1;
        let right = self.sum()?;
        match (left.1, right.1) {
            (Type::Num, Type::Num) => {}
            (Type::Text, Type::Text) if matches!(op, Cmp::Eq | Cmp::Ne) => {}
            (Type::Text, Type::Text) => {
                return self.err(op_col, "texts compare only with == and !=".into());
            }
            (a, b) => {
                return self.err(
                    op_col,
                    format!(
                        "compares {} with {}: compare numbers or texts",
                        a.as_str(),
                        b.as_str()
                    ),
                );
            }
        }
        if matches!(self.peek(), Tok::Op("<" | "<=" | ">" | ">=" | "==" | "!=")) {
            return self.err(self.col(), "comparisons do not chain: join them with and".into());
        }
        Ok((Node::Cmp(op, Box::new(left.0), Box::new(right.0)), Type::Bool, left.2))
    }

    fn sum(&mut self) -> Result<Typed, ExprError> {
        let mut left = self.product()?;
        loop {
            let op = match self.peek() {
                Tok::Op("+") => Arith::Add,
                Tok::Op("-") => Arith::Sub,
                _ => return Ok(left),
            };
            self.at += 1;
            let right = self.product()?;
            self.want(&left, Type::Num, "arithmetic")?;
            self.want(&right, Type::Num, "arithmetic")?;
            left = (Node::Arith(op, Box::new(left.0), Box::new(right.0)), Type::Num, left.2);
        }
    }

    fn product(&mut self) -> Result<Typed, ExprError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Op("*") => Arith::Mul,
                Tok::Op("/") => Arith::Div,
                _ => return Ok(left),
            };
            self.at += 1;
            let right = self.unary()?;
            self.want(&left, Type::Num, "arithmetic")?;
            self.want(&right, Type::Num, "arithmetic")?;
            left = (Node::Arith(op, Box::new(left.0), Box::new(right.0)), Type::Num, left.2);
        }
    }

    fn unary(&mut self) -> Result<Typed, ExprError> {
        if self.is_op("-") {
            let col = self.col();
            self.at += 1;
            self.nest()?;
            let inner = self.unary()?;
            self.depth -= 1;
            self.want(&inner, Type::Num, "a minus sign")?;
            return Ok((Node::Neg(Box::new(inner.0)), Type::Num, col));
        }
        self.atom()
    }

    fn read(&mut self, t: Term) -> Node {
        let i = match self.terms.iter().position(|x| *x == t) {
            Some(i) => i,
            None => {
                self.terms.push(t);
                self.terms.len() - 1
            }
        };
        Node::Read(i)
    }

    fn atom(&mut self) -> Result<Typed, ExprError> {
        let col = self.col();
        let tok = self.peek().clone();
        self.at += 1;
        match tok {
            Tok::Num(v, _) => Ok((Node::Num(v), Type::Num, col)),
            Tok::Text(s) => Ok((Node::Text(s), Type::Text, col)),
            Tok::Op("(") => {
                let inner = self.or()?;
                self.expect_op(")", "to close the bracket")?;
                Ok((inner.0, inner.1, col))
            }
            Tok::Ident(name) => {
                let call = self.is_op("(");
                if let Some((_, make, what)) = TRENDS.iter().find(|t| t.0 == name) {
                    if !call {
                        return self.err(
                            col,
                            format!("{name} needs a window of days: {name}(DAYS), {what}"),
                        );
                    }
                    self.at += 1;
                    let arg_col = self.col();
                    let days = match self.peek() {
                        Tok::Num(v, false)
                            if v.fract() == 0.0 && (1.0..=MAX_WINDOW as f64).contains(v) =>
                        {
                            *v as i64
                        }
                        _ => {
                            return self.err(
                                arg_col,
                                format!("the window of {name} is a whole number of days from 1 to {MAX_WINDOW}"),
                            );
                        }
                    };
                    self.at += 1;
                    self.expect_op(")", &format!("after {name}'s window"))?;
                    let node = self.read(make(days));
                    return Ok((node, Type::Num, col));
                }
                if let Some((_, arity)) = MATHS.iter().find(|m| m.0 == name) {
                    if !call {
                        return self.err(col, format!("{name} is a function: {name}(...)"));
                    }
                    self.at += 1;
                    let mut args = Vec::new();
                    loop {
                        let a = self.or()?;
                        self.want(&a, Type::Num, &name)?;
                        args.push(a.0);
                        if self.is_op(",") {
                            self.at += 1;
                        } else {
                            break;
                        }
                    }
                    if args.len() != *arity {
                        return self.err(
                            col,
                            format!(
                                "{name} takes {arity} argument{}, got {}",
                                if *arity == 1 { "" } else { "s" },
                                args.len()
                            ),
                        );
                    }
                    self.expect_op(")", &format!("to close {name}"))?;
                    let mut it = args.into_iter().map(Box::new);
                    let a = it.next().expect("arity checked");
                    let node = match name.as_str() {
                        "abs" => Node::Abs(a),
                        "min" => Node::Min(a, it.next().expect("arity checked")),
                        _ => Node::Max(a, it.next().expect("arity checked")),
                    };
                    return Ok((node, Type::Num, col));
                }
                match name.as_str() {
                    "true" | "false" => return Ok((Node::Bool(name == "true"), Type::Bool, col)),
                    "and" | "or" | "not" => {
                        return self.err(col, format!("{name} needs a condition before it"));
                    }
                    _ => {}
                }
                let Some(term) = name_term(&name) else {
                    let hint =
                        closest(&name).map_or(String::new(), |c| format!(" (did you mean {c}?)"));
                    return self.err(col, format!("unknown name {name:?}{hint}"));
                };
                if call {
                    return self.err(col, format!("{name} is a value, not a function"));
                }
                let node = self.read(term);
                Ok((node, term.ty(), col))
            }
            Tok::End => self.err(col, "the expression ends too early".into()),
            Tok::Op(o) => self.err(col, format!("unexpected {o:?}")),
        }
    }
}

impl Expr {
    /// Parses and type-checks a condition.
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        if src.len() > MAX_LEN {
            return Err(ExprError { column: 1, reason: format!("longer than {MAX_LEN} bytes") });
        }
        let toks = lex(src)?;
        let mut p = Parser { toks, at: 0, depth: 0, terms: Vec::new() };
        if p.peek() == &Tok::End {
            return p.err(0, "empty: write a condition, e.g. usage_change(30) <= -50%".into());
        }
        let root = p.or()?;
        if p.peek() != &Tok::End {
            return p.err(p.col(), format!("expected and, or or the end, found {}", p.describe()));
        }
        if root.1 != Type::Bool {
            return p.err(0, format!("a rule needs a condition, this is {}", root.1.as_str()));
        }
        Ok(Expr { source: src.to_string(), root: root.0, terms: p.terms })
    }

    /// The days of daily usage it reads.
    pub fn usage_days(&self) -> i64 {
        self.terms.iter().map(|t| t.usage_days()).max().unwrap_or(0)
    }

    /// Whether the condition holds for these values of [`terms`](Self::terms) (in order);
    /// unknown is not true.
    pub fn holds(&self, values: &[Value]) -> bool {
        eval(&self.root, values).truth() == Some(true)
    }

    /// The values read, as `term value` pairs for an alert's message (changes as signed
    /// percentages).
    pub fn describe(&self, values: &[Value]) -> String {
        self.terms
            .iter()
            .zip(values)
            .map(|(t, v)| match v {
                Value::Num(x) if x.is_finite() && t.is_change() => {
                    format!("{t} {:+.0}%", x * 100.0)
                }
                _ => format!("{t} {v}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

enum V<'a> {
    N(f64),
    B(Option<bool>),
    T(Option<&'a str>),
}

impl V<'_> {
    fn num(&self) -> f64 {
        match self {
            V::N(x) => *x,
            _ => f64::NAN,
        }
    }

    fn truth(&self) -> Option<bool> {
        match self {
            V::B(b) => *b,
            _ => None,
        }
    }
}

fn eval<'a>(n: &'a Node, values: &'a [Value]) -> V<'a> {
    let num = |x: f64| V::N(if x.is_finite() { x } else { f64::NAN });
    match n {
        Node::Num(x) => V::N(*x),
        Node::Text(s) => V::T(Some(s.as_str())),
        Node::Bool(b) => V::B(Some(*b)),
        Node::Read(i) => match &values[*i] {
            Value::Num(x) => num(*x),
            Value::Text(t) => V::T(t.as_deref()),
        },
        Node::Neg(a) => num(-eval(a, values).num()),
        Node::Abs(a) => num(eval(a, values).num().abs()),
        // Missing stays missing: the smaller of an unknown and 3 is unknown.
        Node::Min(a, b) => {
            let (x, y) = (eval(a, values).num(), eval(b, values).num());
            num(if x.is_nan() || y.is_nan() { f64::NAN } else { x.min(y) })
        }
        Node::Max(a, b) => {
            let (x, y) = (eval(a, values).num(), eval(b, values).num());
            num(if x.is_nan() || y.is_nan() { f64::NAN } else { x.max(y) })
        }
        Node::Arith(op, a, b) => {
            let (x, y) = (eval(a, values).num(), eval(b, values).num());
            // Division by zero is unknown, not infinity.
            num(match op {
                Arith::Add => x + y,
                Arith::Sub => x - y,
                Arith::Mul => x * y,
                Arith::Div if y == 0.0 => f64::NAN,
                Arith::Div => x / y,
            })
        }
        Node::Not(a) => V::B(eval(a, values).truth().map(|b| !b)),
        Node::And(a, b) => V::B(match (eval(a, values).truth(), eval(b, values).truth()) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        }),
        Node::Or(a, b) => V::B(match (eval(a, values).truth(), eval(b, values).truth()) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        }),
        Node::Cmp(op, a, b) => V::B(match (eval(a, values), eval(b, values)) {
            (V::N(x), V::N(y)) if x.is_nan() || y.is_nan() => None,
            (V::N(x), V::N(y)) => Some(match op {
                Cmp::Lt => x < y,
                Cmp::Le => x <= y,
                Cmp::Gt => x > y,
                Cmp::Ge => x >= y,
                Cmp::Eq => x == y,
                Cmp::Ne => x != y,
            }),
            (V::T(Some(x)), V::T(Some(y))) => Some((x == y) == (*op == Cmp::Eq)),
            _ => None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        Expr::parse(src).unwrap_err().to_string()
    }

    /// Evaluates with the values given by name (the rest missing).
    fn holds(src: &str, given: &[(&str, Value)]) -> bool {
        let e = Expr::parse(src).unwrap_or_else(|x| panic!("{src}: {x}"));
        let values: Vec<Value> = e
            .terms
            .iter()
            .map(|t| {
                let name = t.to_string();
                given.iter().find(|g| g.0 == name).map(|g| g.1.clone()).unwrap_or(match t.ty() {
                    Type::Text => Value::Text(None),
                    _ => Value::Num(f64::NAN),
                })
            })
            .collect();
        e.holds(&values)
    }

    #[test]
    fn the_divergence_rule_reads_usage_and_mrr_trends() {
        let src = "usage_change(60) <= -30% and mrr_change(60) >= 0";
        let e = Expr::parse(src).unwrap();
        assert_eq!(e.terms, vec![Term::UsageChange(60), Term::MrrChange(60)]);
        assert_eq!(e.usage_days(), 120);
        let n = Value::Num;
        assert!(holds(src, &[("usage_change(60)", n(-0.35)), ("mrr_change(60)", n(0.0))]));
        assert!(holds(src, &[("usage_change(60)", n(-0.30)), ("mrr_change(60)", n(0.1))]));
        assert!(!holds(src, &[("usage_change(60)", n(-0.29)), ("mrr_change(60)", n(0.1))]));
        assert!(!holds(src, &[("usage_change(60)", n(-0.5)), ("mrr_change(60)", n(-0.01))]));
        // No usage before, or no MRR then: the change is unknown, and the rule is quiet.
        assert!(!holds(src, &[("mrr_change(60)", n(0.0))]));
        assert_eq!(e.describe(&[n(-0.354), n(0.0)]), "usage_change(60) -35%, mrr_change(60) +0%");
    }

    #[test]
    fn missing_values_follow_three_valued_logic() {
        let n = Value::Num;
        // Unknown or true is true; unknown and false is false; not unknown is unknown.
        assert!(holds("health < 40 or tickets(30) >= 3", &[("tickets(30)", n(3.0))]));
        assert!(!holds("health < 40 and tickets(30) >= 3", &[("tickets(30)", n(3.0))]));
        assert!(!holds("not health < 40", &[]));
        assert!(holds("not health < 40", &[("health", n(55.0))]));
        assert!(!holds("health < 40 or health >= 40", &[]));
        // Dividing by zero is unknown; min and max of an unknown are unknown.
        assert!(!holds(
            "usage(30) / tickets(30) > 1",
            &[("usage(30)", n(5.0)), ("tickets(30)", n(0.0))]
        ));
        assert!(holds(
            "usage(30) / tickets(30) > 1",
            &[("usage(30)", n(5.0)), ("tickets(30)", n(2.0))]
        ));
        assert!(!holds("min(health, 50) < 60", &[]));
        assert!(holds("max(health, 50) >= 70 and abs(-2) == 2", &[("health", n(70.0))]));
    }

    #[test]
    fn precedence_is_arithmetic_then_comparison_then_not_and_or() {
        let n = Value::Num;
        assert!(holds("1 + 2 * 3 == 7", &[]));
        assert!(holds("(1 + 2) * 3 == 9", &[]));
        assert!(holds("-2 * -3 == 6 and 10 - 2 - 3 == 5 and 12 / 2 / 3 == 2", &[]));
        // and binds tighter than or.
        assert!(holds("true or false and false", &[]));
        assert!(!holds("(true or false) and false", &[]));
        assert!(holds(
            "licence_utilisation < 50% and days_to_renewal <= 90",
            &[("licence_utilisation", n(0.4)), ("days_to_renewal", n(90.0)),]
        ));
    }

    #[test]
    fn texts_compare_for_equality() {
        let t = |s: &str| Value::Text(Some(s.to_string()));
        assert!(holds("segment == \"enterprise\"", &[("segment", t("enterprise"))]));
        assert!(!holds("segment != \"enterprise\"", &[("segment", t("enterprise"))]));
        assert!(!holds("segment == \"enterprise\"", &[]));
        assert!(!holds("segment != \"enterprise\"", &[]), "unknown is not unequal");
        assert!(holds("plan == \"pro\" or segment == \"smb\"", &[("plan", t("pro"))]));
    }

    #[test]
    fn errors_name_the_column_and_the_reason() {
        assert_eq!(
            err("usage_chnge(60) < -30%"),
            "at column 1: unknown name \"usage_chnge\" (did you mean usage_change?)"
        );
        assert_eq!(err("health < "), "at column 10: the expression ends too early");
        assert_eq!(
            err("usage_change < 0"),
            "at column 1: usage_change needs a window of days: usage_change(DAYS), usage in the last N days on the N before"
        );
        assert_eq!(
            err("usage(0) > 1"),
            "at column 7: the window of usage is a whole number of days from 1 to 365"
        );
        assert_eq!(
            err("usage(400) > 1"),
            "at column 7: the window of usage is a whole number of days from 1 to 365"
        );
        assert_eq!(
            err("usage(7.5) > 1"),
            "at column 7: the window of usage is a whole number of days from 1 to 365"
        );
        assert_eq!(err("health = 3"), "at column 8: write == to compare for equality");
        assert_eq!(err("health < 3 && true"), "at column 12: write and instead of &&");
        assert_eq!(err("health + 1"), "at column 1: a rule needs a condition, this is a number");
        assert_eq!(err("health and true"), "at column 1: and needs a condition, this is a number");
        assert_eq!(err("segment < \"b\""), "at column 9: texts compare only with == and !=");
        assert_eq!(
            err("segment == 3"),
            "at column 9: compares a text with a number: compare numbers or texts"
        );
        assert_eq!(
            err("1 < health < 3"),
            "at column 12: comparisons do not chain: join them with and"
        );
        assert_eq!(
            err("(health < 3"),
            "at column 12: expected \")\" to close the bracket, found the end"
        );
        assert_eq!(err("health(3) > 1"), "at column 1: health is a value, not a function");
        assert_eq!(err("min(health) > 1"), "at column 1: min takes 2 arguments, got 1");
        assert_eq!(
            err("health > 1 tickets(3)"),
            "at column 12: expected and, or or the end, found \"tickets\""
        );
        assert_eq!(err("segment == \"smb"), "at column 12: a text without its closing quote");
        assert_eq!(err("health > 1 # x"), "at column 12: unexpected character '#'");
        assert_eq!(
            err("  "),
            "at column 1: empty: write a condition, e.g. usage_change(30) <= -50%"
        );
        assert_eq!(
            err("3x > 1"),
            "at column 2: a number runs into a name: put a space or an operator between"
        );
        assert!(err(&"(".repeat(100)).contains("nested more than 48 deep"));
        assert!(err(&"not ".repeat(100)).contains("nested more than 48 deep"));
        assert!(err(&"-".repeat(100)).contains("nested more than 48 deep"));
        assert!(err(&"x".repeat(MAX_LEN + 1)).contains("longer than 2000 bytes"));
    }

    #[test]
    fn every_feature_is_a_name() {
        for d in DEFS {
            let e = Expr::parse(&format!("{} >= 0", d.name)).unwrap();
            assert_eq!(e.terms.len(), 1);
            assert_eq!(e.terms[0].to_string(), d.name);
        }
    }
}
