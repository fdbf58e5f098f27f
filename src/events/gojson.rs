//! Request bodies decoded as nats-server's `json.Unmarshal` into its option structs
//! decodes them: the same syntax errors (Go's scanner words them), the same type
//! errors, keys matched without regard to case, unknown keys ignored. Clients show
//! these texts to users, so they are part of the protocol.

use serde_json::{Map, Value};

/// The Go type of one option field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `bool`.
    Bool,
    /// `int`.
    Int,
    /// `uint64`.
    Uint,
    /// `string`.
    Str,
    /// `[]string`.
    StrList,
    /// A named Go type over `int` (`server.ConnState`).
    NamedInt(&'static str),
    /// A named Go type over `string` (`server.SortOpt`).
    NamedStr(&'static str),
}

impl Kind {
    fn go_name(self) -> &'static str {
        match self {
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Uint => "uint64",
            Kind::Str => "string",
            Kind::StrList => "[]string",
            Kind::NamedInt(n) | Kind::NamedStr(n) => n,
        }
    }
}

/// One field of an option struct: its JSON name and type.
pub type Field = (&'static str, Kind);

/// The filter every server request takes (`EventFilterOptions`).
pub const FILTER: &[Field] = &[
    ("server_name", Kind::Str),
    ("cluster", Kind::Str),
    ("host", Kind::Str),
    ("tags", Kind::StrList),
    ("domain", Kind::Str),
];

/// Decoded fields by JSON name; absent and `null` fields are left out.
#[derive(Debug, Default)]
pub struct Decoded(Map<String, Value>);

impl Decoded {
    /// A boolean field (false when absent).
    pub fn bool(&self, key: &str) -> bool {
        self.0.get(key).and_then(Value::as_bool).unwrap_or(false)
    }

    /// An integer field (0 when absent).
    pub fn int(&self, key: &str) -> i64 {
        self.0.get(key).and_then(Value::as_i64).unwrap_or(0)
    }

    /// An unsigned field (0 when absent).
    pub fn uint(&self, key: &str) -> u64 {
        self.0.get(key).and_then(Value::as_u64).unwrap_or(0)
    }

    /// A string field (empty when absent).
    pub fn str(&self, key: &str) -> String {
        self.0
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    /// A string list field (empty when absent).
    pub fn list(&self, key: &str) -> Vec<String> {
        self.0
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Decodes `body` into the Go struct `server.<name>` with `fields`, or Go's error.
pub fn decode(body: &[u8], name: &str, fields: &[&[Field]]) -> Result<Decoded, String> {
    check_syntax(body)?;
    let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let obj = match value {
        Value::Null => return Ok(Decoded::default()),
        Value::Object(o) => o,
        other => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type server.{name}",
                kind_of(&other)
            ))
        }
    };
    let mut out = Map::new();
    let mut first_err = None;
    for (key, v) in obj {
        // Go prefers an exact match, then one that differs only in case.
        let field = fields
            .iter()
            .flat_map(|f| f.iter())
            .find(|(n, _)| *n == key)
            .or_else(|| {
                fields
                    .iter()
                    .flat_map(|f| f.iter())
                    .find(|(n, _)| n.eq_ignore_ascii_case(&key))
            });
        let Some(&(fname, kind)) = field else {
            continue;
        };
        if v.is_null() {
            continue;
        }
        match check_type(&v, kind) {
            Ok(()) => {
                out.insert(fname.to_string(), v);
            }
            Err((what, of)) => {
                first_err.get_or_insert_with(|| {
                    format!(
                        "json: cannot unmarshal {what} into Go struct field {name}.{fname} of type {of}"
                    )
                });
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(Decoded(out)),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether `v` fits `kind`; else what Go calls the value and the type.
fn check_type(v: &Value, kind: Kind) -> Result<(), (String, &'static str)> {
    let wrong = || Err((kind_of(v).to_string(), kind.go_name()));
    match kind {
        Kind::Bool if v.is_boolean() => Ok(()),
        Kind::Str | Kind::NamedStr(_) if v.is_string() => Ok(()),
        Kind::Int | Kind::NamedInt(_) | Kind::Uint => {
            let Value::Number(n) = v else {
                return wrong();
            };
            let fits = match kind {
                Kind::Uint => n.is_u64(),
                _ => n.is_i64(),
            };
            if fits {
                Ok(())
            } else {
                Err((format!("number {n}"), kind.go_name()))
            }
        }
        Kind::StrList => match v {
            Value::Array(items) => match items.iter().find(|i| !i.is_string() && !i.is_null()) {
                Some(bad) => Err((kind_of(bad).to_string(), "string")),
                None => Ok(()),
            },
            _ => wrong(),
        },
        _ => wrong(),
    }
}

/// Go's `strconv.QuoteRune` in single quotes, as its scanner quotes a character.
fn quote_char(c: u8) -> String {
    match c {
        b'\'' => "'\\''".into(),
        b'"' => "'\"'".into(),
        b'\n' => "'\\n'".into(),
        b'\r' => "'\\r'".into(),
        b'\t' => "'\\t'".into(),
        0x20..=0x7e => format!("'{}'", c as char),
        _ if c < 0x20 || c == 0x7f => format!("'\\x{c:02x}'"),
        _ => "'\u{fffd}'".into(),
    }
}

/// Where the scanner is, for its error text.
#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Top,
    Value,
    Array,
}

struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
}

fn invalid(c: u8, what: &str) -> String {
    format!("invalid character {} {what}", quote_char(c))
}

const EOF: &str = "unexpected end of JSON input";

impl Scanner<'_> {
    fn ws(&mut self) {
        while self
            .s
            .get(self.i)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Result<u8, String> {
        let c = self.peek().ok_or_else(|| EOF.to_string())?;
        self.i += 1;
        Ok(c)
    }

    fn value(&mut self, depth: usize) -> Result<(), String> {
        if depth > 10_000 {
            return Err("exceeded max depth".into());
        }
        self.ws();
        let c = self.next()?;
        match c {
            b'{' => {
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    let c = self.next()?;
                    if c != b'"' {
                        return Err(invalid(c, "looking for beginning of object key string"));
                    }
                    self.string()?;
                    self.ws();
                    let c = self.next()?;
                    if c != b':' {
                        return Err(invalid(c, "after object key"));
                    }
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        b'}' => return Ok(()),
                        c => return Err(self.after(c, Ctx::Value)),
                    }
                }
            }
            b'[' => {
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        b']' => return Ok(()),
                        c => return Err(self.after(c, Ctx::Array)),
                    }
                }
            }
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => self.number(c),
            b't' => self.literal(b"rue", "true"),
            b'f' => self.literal(b"alse", "false"),
            b'n' => self.literal(b"ull", "null"),
            c => Err(invalid(c, "looking for beginning of value")),
        }
    }

    fn after(&self, c: u8, ctx: Ctx) -> String {
        let what = match ctx {
            Ctx::Top => "after top-level value",
            Ctx::Value => "after object key:value pair",
            Ctx::Array => "after array element",
        };
        invalid(c, what)
    }

    fn literal(&mut self, rest: &[u8], word: &str) -> Result<(), String> {
        for &want in rest {
            let c = self.next()?;
            if c != want {
                return Err(invalid(
                    c,
                    &format!("in literal {word} (expecting {})", quote_char(want)),
                ));
            }
        }
        Ok(())
    }

    fn string(&mut self) -> Result<(), String> {
        loop {
            match self.next()? {
                b'"' => return Ok(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        for _ in 0..4 {
                            let c = self.next()?;
                            if !c.is_ascii_hexdigit() {
                                return Err(invalid(c, "in \\u hexadecimal character escape"));
                            }
                        }
                    }
                    c => return Err(invalid(c, "in string escape code")),
                },
                c if c < 0x20 => return Err(invalid(c, "in string literal")),
                _ => {}
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self, first: u8) -> Result<(), String> {
        if first == b'-' {
            let c = self.next()?;
            if !c.is_ascii_digit() {
                return Err(invalid(c, "in numeric literal"));
            }
            if c != b'0' {
                self.digits();
            }
        } else if first != b'0' {
            self.digits();
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            let c = self.next()?;
            if !c.is_ascii_digit() {
                return Err(invalid(c, "after decimal point in numeric literal"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            let mut c = self.next()?;
            if c == b'+' || c == b'-' {
                c = self.next()?;
            }
            if !c.is_ascii_digit() {
                return Err(invalid(c, "in exponent of numeric literal"));
            }
            self.digits();
        }
        Ok(())
    }
}

/// Go's `json.Valid` with its error: the whole input is checked before decoding.
fn check_syntax(body: &[u8]) -> Result<(), String> {
    let mut sc = Scanner { s: body, i: 0 };
    sc.value(0)?;
    sc.ws();
    match sc.peek() {
        None => Ok(()),
        Some(c) => Err(sc.after(c, Ctx::Top)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNZ: &[Field] = &[
        ("subscriptions", Kind::Bool),
        ("limit", Kind::Int),
        ("cid", Kind::Uint),
        ("state", Kind::NamedInt("server.ConnState")),
    ];

    fn err(body: &str) -> String {
        decode(body.as_bytes(), "ConnzEventOptions", &[CONNZ, FILTER]).unwrap_err()
    }

    #[test]
    fn syntax_errors_in_go_words() {
        assert_eq!(
            err("{bad"),
            "invalid character 'b' looking for beginning of object key string"
        );
        assert_eq!(err("{\"a\":1"), "unexpected end of JSON input");
        assert_eq!(err(" "), "unexpected end of JSON input");
        assert_eq!(err("{\"a\" 1}"), "invalid character '1' after object key");
        assert_eq!(
            err("{\"a\":1 2}"),
            "invalid character '2' after object key:value pair"
        );
        assert_eq!(err("{} x"), "invalid character 'x' after top-level value");
        assert_eq!(
            err("x"),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(
            err("tru"),
            "unexpected end of JSON input",
            "a literal cut short"
        );
        assert_eq!(
            err("{\"a\":tx}"),
            "invalid character 'x' in literal true (expecting 'r')"
        );
        assert_eq!(err("[1 2]"), "invalid character '2' after array element");
        assert_eq!(err("-x"), "invalid character 'x' in numeric literal");
    }

    #[test]
    fn type_errors_name_the_field() {
        assert_eq!(
            err("{\"subscriptions\":\"x\"}"),
            "json: cannot unmarshal string into Go struct field ConnzEventOptions.subscriptions of type bool"
        );
        assert_eq!(
            err("{\"cid\":-1}"),
            "json: cannot unmarshal number -1 into Go struct field ConnzEventOptions.cid of type uint64"
        );
        assert_eq!(
            err("{\"tags\":\"x\"}"),
            "json: cannot unmarshal string into Go struct field ConnzEventOptions.tags of type []string"
        );
        assert_eq!(
            err("[1]"),
            "json: cannot unmarshal array into Go value of type server.ConnzEventOptions"
        );
    }

    #[test]
    fn keys_match_without_case_and_unknown_ones_are_ignored() {
        let d = decode(
            br#"{"Subscriptions":true,"LIMIT":3,"other":[1,{}],"cid":null}"#,
            "ConnzEventOptions",
            &[CONNZ],
        )
        .unwrap();
        assert!(d.bool("subscriptions"));
        assert_eq!(d.int("limit"), 3);
        assert_eq!(d.uint("cid"), 0);
        assert!(decode(b"null", "X", &[CONNZ]).is_ok());
    }
}
