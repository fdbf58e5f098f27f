//! Value tree produced by the nats-server conf parser (`parser.rs`).
//!
//! Every value carries the position where it started ([`Pos`]); map entries
//! additionally remember where their key started, which is what nats-server
//! reports for semantic errors such as `unknown field "x"`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A source position. `line` and `col` are 1-based; `col` counts characters
/// (not bytes), a tab counts as one column.
///
/// Note: nats-server prints *0-based* columns in its semantic errors
/// (`file:1:0: unknown field "x"`); use [`Pos::go_col`] to reproduce that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<PathBuf>,
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub fn new(file: Arc<PathBuf>, line: u32, col: u32) -> Pos {
        Pos { file, line, col }
    }

    /// The column as nats-server prints it (0-based).
    pub fn go_col(&self) -> u32 {
        self.col.saturating_sub(1)
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// A parsed configuration value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// An ISO8601 Zulu datetime (`2006-01-02T15:04:05Z`), kept verbatim.
    Datetime(String),
    Map(Map),
    Array(Vec<Item>),
}

impl Value {
    /// Go's name for this value's dynamic type, as nats-server's messages show it.
    pub fn go_type(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::Int(_) => "int64",
            Value::Float(_) => "float64",
            Value::Bool(_) => "bool",
            Value::Datetime(_) => "time.Time",
            Value::Map(_) => "map[string]interface {}",
            Value::Array(_) => "[]interface {}",
        }
    }

    /// nats-server's message for a value of the wrong type (a failed Go type assertion).
    pub fn conversion_error(&self, want: &str) -> String {
        format!(
            "interface conversion: interface {{}} is {}, not {want}",
            self.go_type()
        )
    }

    /// Name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Bool(_) => "boolean",
            Value::Datetime(_) => "datetime",
            Value::Map(_) => "map",
            Value::Array(_) => "array",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Item]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// A value and the position where it started.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub value: Value,
    pub pos: Pos,
}

impl Item {
    pub fn new(value: Value, pos: Pos) -> Item {
        Item { value, pos }
    }

    /// How many values this one holds, itself included, counting no further than
    /// `limit + 1` (so that sizing a huge tree costs no more than the limit).
    pub fn size_up_to(&self, limit: usize) -> usize {
        let mut n = 1;
        let mut stack = vec![self];
        while let Some(item) = stack.pop() {
            let before = stack.len();
            match &item.value {
                Value::Map(m) => stack.extend(m.entries().iter().map(|e| &e.item)),
                Value::Array(a) => stack.extend(a.iter()),
                _ => {}
            }
            n += stack.len() - before;
            if n > limit {
                return n;
            }
        }
        n
    }
}

/// One `key = value` entry of a [`Map`].
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    /// Where the key started (for quoted keys: the opening quote).
    pub key_pos: Pos,
    pub item: Item,
    /// True when the entry was referenced as a `$variable` later in the
    /// file. nats-server ignores such top-level keys instead of reporting
    /// `unknown field`.
    pub used_as_variable: bool,
}

/// An ordered map. Keys are stored exactly as written.
///
/// * Re-defining a key with exactly the same spelling replaces the earlier
///   entry (later wins, like nats-server); the new entry goes to the end.
/// * [`Map::get`] matches keys case-insensitively and returns the *last*
///   matching entry (nats-server matches option names case-insensitively).
/// * `$variable` lookups are case-sensitive (use [`Map::get_exact`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Map {
    entries: Vec<Entry>,
}

impl Map {
    pub fn new() -> Map {
        Map::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Inserts an entry; an existing entry with exactly the same key is
    /// removed first (later definition wins).
    pub fn insert(&mut self, key: String, key_pos: Pos, item: Item) {
        self.entries.retain(|e| e.key != key);
        self.entries.push(Entry {
            key,
            key_pos,
            item,
            used_as_variable: false,
        });
    }

    /// Case-insensitive lookup; the last matching entry wins.
    pub fn get(&self, key: &str) -> Option<&Item> {
        self.get_entry(key).map(|e| &e.item)
    }

    /// Case-insensitive lookup of the whole entry; the last match wins.
    pub fn get_entry(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.key.eq_ignore_ascii_case(key))
    }

    /// Case-sensitive lookup.
    pub fn get_exact(&self, key: &str) -> Option<&Item> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.key == key)
            .map(|e| &e.item)
    }

    pub(crate) fn get_exact_mut_entry(&mut self, key: &str) -> Option<&mut Entry> {
        self.entries.iter_mut().rev().find(|e| e.key == key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get_entry(key).is_some()
    }

    /// Whether the (exactly spelled) key was referenced as a `$variable`.
    pub fn is_used_variable(&self, key: &str) -> bool {
        self.entries
            .iter()
            .rev()
            .find(|e| e.key == key)
            .is_some_and(|e| e.used_as_variable)
    }

    /// Entries in definition order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// `(key, item)` pairs in definition order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Item)> {
        self.entries.iter().map(|e| (e.key.as_str(), &e.item))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.key.as_str())
    }

    pub(crate) fn take_entries(self) -> Vec<Entry> {
        self.entries
    }

    pub(crate) fn push_entry(&mut self, entry: Entry) {
        self.entries.retain(|e| e.key != entry.key);
        self.entries.push(entry);
    }
}

/// A configuration error. `Display` renders `file:line:col: message`
/// (or just the message when no position is known).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    pub pos: Option<Pos>,
    pub message: String,
}

impl ConfigError {
    pub fn new(pos: Option<Pos>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            pos,
            message: message.into(),
        }
    }

    pub fn at(pos: Pos, message: impl Into<String>) -> ConfigError {
        ConfigError::new(Some(pos), message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pos {
            Some(p) => write!(f, "{}: {}", p, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}
