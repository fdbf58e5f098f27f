//! Parser for the nats-server configuration file format.
//!
//! Written from the grammar (see `server-ops.md` §1) and checked against the
//! behaviour of the reference `nats-server -t`. Produces a [`Map`] of
//! [`Item`]s that carry source positions.
//!
//! Summary of the accepted language:
//! * entries `key = value`, `key: value`, `key value`, ended by a newline,
//!   `,`, `;`, a comment, or the closing `}` of the enclosing map; the whole
//!   file may be wrapped in `{ ... }`; a stray `}` at top level is ignored.
//! * keys: bare (up to whitespace, `=` or `:`), `"double"` or `'single'`.
//! * values: maps `{}`, arrays `[]` (`,` or newline separated, trailing comma
//!   ok), `"strings"` with escapes `\t \n \r \" \\ \xHH`, `'raw strings'`,
//!   bare strings (escapes allowed, end at whitespace `,` `;` `]` `}` `'`),
//!   block strings `(` ... newline `)`, integers with optional size suffix,
//!   floats `1.5`, booleans `true/false/yes/no/on/off` (any case),
//!   datetimes `2006-01-02T15:04:05Z`, `$variables`, `include path`.
//! * `#` and `//` comments.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use super::value::{ConfigError, Entry, Item, Map, Pos, Value};

/// Maximum nesting of maps/arrays (protects the stack).
const MAX_DEPTH: usize = 200;
/// Maximum nesting of include files.
const MAX_INCLUDE_DEPTH: usize = 32;
/// Maximum nesting of environment variables that refer to other variables.
const MAX_ENV_DEPTH: usize = 32;
/// Most values that `$variable` references may copy in one document, includes and all:
/// every reference copies its value, so nested references (`b: [$a,$a]`, `c: [$b,$b]`,
/// ...) grow exponentially, and a few hundred bytes would otherwise exhaust memory.
const MAX_COPIED_VALUES: usize = 1 << 20;

type EnvFn<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Parses a configuration file. Includes are resolved relative to the
/// file's directory; `$VARS` not defined in the file come from the process
/// environment.
pub fn parse_file(path: &Path) -> Result<Map, ConfigError> {
    parse_file_with_env(path, &process_env)
}

/// [`parse_file`] with an injectable environment lookup.
pub fn parse_file_with_env(path: &Path, env: EnvFn<'_>) -> Result<Map, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            None,
            format!("error opening config file '{}': {}", path.display(), e),
        )
    })?;
    parse_str_with_env(&text, path, env)
}

/// Parses configuration text. `origin` names the file in positions and is
/// the base for relative includes (its parent directory is used).
pub fn parse_str(text: &str, origin: &Path) -> Result<Map, ConfigError> {
    parse_str_with_env(text, origin, &process_env)
}

/// [`parse_str`] with an injectable environment lookup.
pub fn parse_str_with_env(text: &str, origin: &Path, env: EnvFn<'_>) -> Result<Map, ConfigError> {
    let mut stack = Vec::new();
    let copied = std::cell::Cell::new(0);
    parse_document(text, origin, env, &mut stack, &copied)
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn parse_document(
    text: &str,
    origin: &Path,
    env: EnvFn<'_>,
    include_stack: &mut Vec<PathBuf>,
    copied: &std::cell::Cell<usize>,
) -> Result<Map, ConfigError> {
    include_stack.push(canonical(origin));
    let mut p = Parser {
        src: text.chars().collect(),
        i: 0,
        line: 1,
        col: 1,
        file: Arc::new(origin.to_path_buf()),
        env,
        scopes: vec![Map::new()],
        depth: 0,
        include_stack,
        copied,
        env_resolving: Vec::new(),
    };
    let r = p.parse_top();
    let map = p.scopes.pop().unwrap_or_default();
    include_stack.pop();
    r.map(|_| map)
}

/// Context in which a value is parsed; selects error wording.
#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Top,
    Map,
}

struct Parser<'a, 's> {
    src: Vec<char>,
    i: usize,
    line: u32,
    col: u32,
    file: Arc<PathBuf>,
    env: EnvFn<'a>,
    /// Maps being built, outermost first; the last is the current one.
    scopes: Vec<Map>,
    depth: usize,
    include_stack: &'s mut Vec<PathBuf>,
    /// Values copied by variable references so far (see [`MAX_COPIED_VALUES`]).
    copied: &'s std::cell::Cell<usize>,
    /// Environment variables currently being expanded (cycle detection).
    env_resolving: Vec<String>,
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\r'
}

fn is_ws(c: char) -> bool {
    is_space(c) || c == '\n'
}

/// Characters that end a bare value (string, number, variable).
fn ends_bare(c: char) -> bool {
    is_ws(c) || matches!(c, ',' | ';' | ']' | '}')
}

fn show(c: Option<char>) -> String {
    match c {
        None => "EOF".to_string(),
        Some('\n') => "\\n".to_string(),
        Some('\r') => "\\r".to_string(),
        Some('\t') => "\\t".to_string(),
        Some(c) => c.to_string(),
    }
}

fn bool_word(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Some(true),
        "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Size suffix multipliers (case-insensitive): `k` = 1000,
/// `kb`/`ki`/`kib` = 1024, and likewise for m, g, t, p, e.
fn suffix_multiplier(s: &str) -> Option<i64> {
    let s = s.to_ascii_lowercase();
    let mut chars = s.chars();
    let exp = match chars.next()? {
        'k' => 1,
        'm' => 2,
        'g' => 3,
        't' => 4,
        'p' => 5,
        'e' => 6,
        _ => return None,
    };
    let rest: String = chars.collect();
    let base: i64 = match rest.as_str() {
        "" => 1000,
        "b" | "i" | "ib" => 1024,
        _ => return None,
    };
    Some(base.pow(exp))
}

impl Parser<'_, '_> {
    // ----- low level ------------------------------------------------------

    fn peek(&self) -> Option<char> {
        self.src.get(self.i).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.src.get(self.i + n).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.src.get(self.i).copied()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn pos(&self) -> Pos {
        Pos::new(self.file.clone(), self.line, self.col)
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, ConfigError> {
        Err(ConfigError::at(self.pos(), msg))
    }

    fn at_comment(&self) -> bool {
        match self.peek() {
            Some('#') => true,
            Some('/') => self.peek_at(1) == Some('/'),
            _ => false,
        }
    }

    fn skip_to_eol(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.bump();
        }
    }

    /// Skips whitespace, newlines and comments.
    fn skip_blank(&mut self) {
        loop {
            match self.peek() {
                Some(c) if is_ws(c) => {
                    self.bump();
                }
                _ if self.at_comment() => self.skip_to_eol(),
                _ => break,
            }
        }
    }

    fn enter(&mut self) -> Result<(), ConfigError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(format!("Maximum nesting depth ({MAX_DEPTH}) exceeded."));
        }
        Ok(())
    }

    fn current(&mut self) -> &mut Map {
        // scopes always holds at least the top-level map.
        let n = self.scopes.len();
        &mut self.scopes[n - 1]
    }

    // ----- maps -----------------------------------------------------------

    fn parse_top(&mut self) -> Result<(), ConfigError> {
        self.skip_blank();
        if self.peek() == Some('{') {
            // The whole document may be wrapped in braces.
            self.bump();
            self.enter()?;
            self.parse_map_body(Ctx::Map)?;
            self.depth -= 1;
            self.bump(); // the closing '}'
            self.expect_entry_end(Ctx::Top)?;
        }
        self.parse_map_body(Ctx::Top)
    }

    /// Parses entries into the current scope until EOF (top level) or an
    /// unconsumed `}` (nested map).
    fn parse_map_body(&mut self, ctx: Ctx) -> Result<(), ConfigError> {
        loop {
            self.skip_blank();
            match self.peek() {
                None if ctx == Ctx::Top => return Ok(()),
                None => return self.err("Unexpected EOF processing map."),
                Some('}') if ctx == Ctx::Top => {
                    // nats-server tolerates stray closing braces here.
                    self.bump();
                    continue;
                }
                Some('}') => return Ok(()),
                Some(c @ ('=' | ':')) => {
                    return self.err(format!("Unexpected key separator '{c}'"));
                }
                Some(c @ (',' | ';')) if ctx == Ctx::Map => {
                    return self.err(format!("Unexpected map value terminator '{c}'."));
                }
                _ => {}
            }
            self.parse_entry()?;
            self.expect_entry_end(ctx)?;
        }
    }

    fn parse_key(&mut self) -> Result<(String, bool), ConfigError> {
        match self.peek() {
            Some('"') => Ok((self.parse_dquoted()?, true)),
            Some('\'') => Ok((self.parse_squoted()?, true)),
            _ => {
                let mut key = String::new();
                while let Some(c) = self.peek() {
                    if is_ws(c) || c == '=' || c == ':' {
                        break;
                    }
                    key.push(c);
                    self.bump();
                }
                Ok((key, false))
            }
        }
    }

    fn parse_entry(&mut self) -> Result<(), ConfigError> {
        let key_pos = self.pos();
        let (key, quoted) = self.parse_key()?;
        self.skip_spaces();
        let explicit_sep = matches!(self.peek(), Some('=' | ':'));
        if explicit_sep {
            self.bump();
            self.skip_spaces();
            match self.peek() {
                Some('\n') => return self.err("Expected value but found new line"),
                None => return self.err("Expected value but found EOF"),
                _ => {}
            }
        } else {
            // Whitespace separator: the value may even start on a later line.
            while self.peek().is_some_and(is_ws) {
                self.bump();
            }
            if self.peek().is_none() {
                return self.err(format!("config is invalid: key '{key}' has no value"));
            }
            if !quoted && key.eq_ignore_ascii_case("include") {
                return self.parse_include(key_pos);
            }
        }
        let item = self.parse_value()?;
        self.current().insert(key, key_pos, item);
        Ok(())
    }

    /// After a map entry: spaces, then newline / `,` / `;` / comment / EOF
    /// or the `}` of the map (left unconsumed).
    fn expect_entry_end(&mut self, ctx: Ctx) -> Result<(), ConfigError> {
        self.skip_spaces();
        if self.at_comment() {
            self.skip_to_eol();
            return Ok(());
        }
        match self.peek() {
            None | Some('\n' | '}') => Ok(()),
            Some(',' | ';') => {
                self.bump();
                Ok(())
            }
            c if ctx == Ctx::Top => self.err(format!(
                "Expected a top-level value to end with a new line, comment or EOF, but got '{}' instead.",
                show(c)
            )),
            c => self.err(format!(
                "Expected a map value terminator \",\" or a map terminator \"}}\", but got '{}' instead.",
                show(c)
            )),
        }
    }

    // ----- include --------------------------------------------------------

    fn parse_include(&mut self, key_pos: Pos) -> Result<(), ConfigError> {
        let path_str = match self.peek() {
            Some('"') => self.parse_dquoted()?,
            Some('\'') => self.parse_squoted()?,
            _ => {
                let mut s = String::new();
                while let Some(c) = self.peek() {
                    if ends_bare(c) || c == '\'' {
                        break;
                    }
                    s.push(c);
                    self.bump();
                }
                s
            }
        };
        if path_str.is_empty() {
            return Err(ConfigError::at(key_pos, "include requires a file name"));
        }
        let base = self
            .file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let path = base.join(&path_str);
        if self.include_stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(ConfigError::at(
                key_pos,
                format!("error parsing include file '{path_str}', includes nested too deeply"),
            ));
        }
        let canon = canonical(&path);
        if self.include_stack.contains(&canon) {
            let chain: Vec<String> = self
                .include_stack
                .iter()
                .chain(std::iter::once(&canon))
                .map(|p| p.display().to_string())
                .collect();
            return Err(ConfigError::at(
                key_pos,
                format!(
                    "error parsing include file '{path_str}', include cycle: {}",
                    chain.join(" -> ")
                ),
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::at(
                key_pos.clone(),
                format!(
                    "error parsing include file '{path_str}', open {}: {e}",
                    path.display()
                ),
            )
        })?;
        // Included files are parsed on their own (they do not see the
        // including file's variables); their keys merge into the current map.
        let sub = parse_document(&text, &path, self.env, self.include_stack, self.copied)?;
        for entry in sub.take_entries() {
            self.current().push_entry(entry);
        }
        Ok(())
    }

    // ----- values ---------------------------------------------------------

    fn parse_value(&mut self) -> Result<Item, ConfigError> {
        let pos = self.pos();
        let value = match self.peek() {
            None => return self.err("Expected value but found EOF"),
            Some('{') => {
                self.bump();
                self.enter()?;
                self.scopes.push(Map::new());
                let r = self.parse_map_body(Ctx::Map);
                let map = self.scopes.pop().unwrap_or_default();
                r?;
                self.bump(); // '}'
                self.depth -= 1;
                Value::Map(map)
            }
            Some('[') => {
                self.bump();
                self.enter()?;
                let items = self.parse_array_body()?;
                self.depth -= 1;
                Value::Array(items)
            }
            Some('"') => Value::String(self.parse_dquoted()?),
            Some('\'') => Value::String(self.parse_squoted()?),
            Some('(') => Value::String(self.parse_block()?),
            Some('$') => return self.parse_variable(pos),
            Some('.') => return self.err("Floats must start with a digit"),
            Some(c) if c == '-' || c.is_ascii_digit() => self.parse_number()?,
            Some(c @ (',' | ';' | ']' | '}')) => {
                return self.err(format!("Expected value but found '{c}'"));
            }
            Some(_) => {
                let start = self.i;
                let s = self.parse_bare()?;
                let raw: String = self.src[start..self.i].iter().collect();
                match bool_word(raw.trim_end_matches('\'')) {
                    Some(b) if !raw.contains('\\') => Value::Bool(b),
                    _ => Value::String(s),
                }
            }
        };
        Ok(Item::new(value, pos))
    }

    fn parse_array_body(&mut self) -> Result<Vec<Item>, ConfigError> {
        let mut items = Vec::new();
        loop {
            self.skip_blank();
            match self.peek() {
                None => return self.err("Unexpected EOF processing array."),
                Some(']') => {
                    self.bump();
                    return Ok(items);
                }
                Some(',') => return self.err("Unexpected array value terminator ','."),
                _ => {}
            }
            items.push(self.parse_value()?);
            self.skip_spaces();
            if self.at_comment() {
                self.skip_to_eol();
            }
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('\n' | ']') => {}
                None => return self.err("Unexpected EOF processing array."),
                c => {
                    return self.err(format!(
                        "Expected an array value terminator \",\" or an array terminator \"]\", but got '{}' instead.",
                        show(c)
                    ))
                }
            }
        }
    }

    /// Reads one escape sequence after a consumed backslash.
    fn parse_escape(&mut self, out: &mut String) -> Result<(), ConfigError> {
        match self.peek() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('x') => {
                self.bump();
                let a = self.peek();
                let b = self.peek_at(1);
                match (a.and_then(|c| c.to_digit(16)), b.and_then(|c| c.to_digit(16))) {
                    (Some(h), Some(l)) => {
                        self.bump();
                        self.bump();
                        out.push(char::from((h * 16 + l) as u8));
                        return Ok(());
                    }
                    _ => {
                        return self.err(format!(
                            "Expected two hexadecimal digits after '\\x', but got '{}{}'",
                            a.map(String::from).unwrap_or_default(),
                            b.map(String::from).unwrap_or_default()
                        ))
                    }
                }
            }
            c => {
                return self.err(format!(
                    "Invalid escape character '{}'. Only the following escape characters are allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\.",
                    show(c)
                ))
            }
        }
        self.bump();
        Ok(())
    }

    fn parse_dquoted(&mut self) -> Result<String, ConfigError> {
        self.bump(); // opening quote
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return self.err("Unexpected EOF."),
                Some('"') => return Ok(s),
                Some('\\') => self.parse_escape(&mut s)?,
                Some(c) => s.push(c),
            }
        }
    }

    fn parse_squoted(&mut self) -> Result<String, ConfigError> {
        self.bump(); // opening quote
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return self.err("Unexpected EOF."),
                Some('\'') => return Ok(s),
                Some(c) => s.push(c),
            }
        }
    }

    /// `(` ... `)` where the closing parenthesis is the first character of
    /// a line. The text between the parentheses is kept verbatim.
    fn parse_block(&mut self) -> Result<String, ConfigError> {
        self.bump(); // '('
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return self.err("Unexpected EOF processing block."),
                Some('\n') if self.peek() == Some(')') => {
                    s.push('\n');
                    self.bump();
                    return Ok(s);
                }
                Some(c) => s.push(c),
            }
        }
    }

    /// A bare string: runs to whitespace, `,`, `;`, `]`, `}` or EOF.
    /// Escapes are processed; a `'` ends the string and is dropped.
    fn parse_bare(&mut self) -> Result<String, ConfigError> {
        self.parse_bare_until(false)
    }

    /// `stop_at_dollar`: used for dotted numbers (`127.0.0.1:4222`), which
    /// nats-server ends at a `$` (so `1.2.3.4:$PORT` is an error).
    fn parse_bare_until(&mut self, stop_at_dollar: bool) -> Result<String, ConfigError> {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if ends_bare(c) || (stop_at_dollar && c == '$') {
                break;
            }
            self.bump();
            match c {
                '\'' => break,
                '\\' => self.parse_escape(&mut s)?,
                c => s.push(c),
            }
        }
        Ok(s)
    }

    fn parse_number(&mut self) -> Result<Value, ConfigError> {
        let start = self.i;
        let (start_line, start_col) = (self.line, self.col);
        let negative = self.peek() == Some('-');
        if negative {
            self.bump();
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return self.err(format!("Expected a digit but got '{}'.", show(self.peek())));
            }
        }
        let digits_start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        let ndigits = self.i - digits_start;
        let int_text: String = self.src[start..self.i].iter().collect();
        match self.peek() {
            None => self.make_int(&int_text, 1),
            Some(c) if ends_bare(c) => self.make_int(&int_text, 1),
            Some('.') => {
                self.bump();
                if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return self.err(format!(
                        "Floats must have a digit after the '.', but got '{}' instead.",
                        show(self.peek())
                    ));
                }
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump();
                }
                if self.peek() == Some('.') && !negative {
                    // Something like an IP address: a bare string.
                    self.rewind(start, start_line, start_col);
                    return Ok(Value::String(self.parse_bare_until(true)?));
                }
                let text: String = self.src[start..self.i].iter().collect();
                match text.parse::<f64>() {
                    Ok(f) => Ok(Value::Float(f)),
                    Err(_) => self.err(format!("Invalid float value '{text}'")),
                }
            }
            Some('-') if !negative => {
                if ndigits != 4 {
                    return self.err("All ISO8601 dates must be in full Zulu form.");
                }
                self.rewind(start, start_line, start_col);
                self.parse_datetime()
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let suffix_start = self.i;
                while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
                    self.bump();
                }
                let suffix: String = self.src[suffix_start..self.i].iter().collect();
                let at_end = self.peek().is_none_or(ends_bare);
                if at_end {
                    if let Some(mult) = suffix_multiplier(&suffix) {
                        return self.make_int(&int_text, mult);
                    }
                }
                if negative {
                    // `-5s`: a number followed by garbage.
                    self.rewind(
                        suffix_start,
                        start_line,
                        start_col + (suffix_start - start) as u32,
                    );
                    return self.make_int(&int_text, 1);
                }
                self.rewind(start, start_line, start_col);
                Ok(Value::String(self.parse_bare()?))
            }
            Some(_) if negative => self.make_int(&int_text, 1),
            Some(_) => {
                // e.g. `1:2`, `1_000`, `1//c`: a bare string.
                self.rewind(start, start_line, start_col);
                Ok(Value::String(self.parse_bare()?))
            }
        }
    }

    /// Moves back to an earlier position on the same line.
    fn rewind(&mut self, i: usize, line: u32, col: u32) {
        self.i = i;
        self.line = line;
        self.col = col;
    }

    fn make_int(&self, text: &str, mult: i64) -> Result<Value, ConfigError> {
        match text.parse::<i64>() {
            // Like nats-server, an oversized suffix product wraps silently.
            Ok(n) => Ok(Value::Int(n.wrapping_mul(mult))),
            Err(_) => self.err(format!("integer '{text}' is out of the range")),
        }
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`, positioned at the first digit.
    fn parse_datetime(&mut self) -> Result<Value, ConfigError> {
        const PATTERN: &str = "dddd-dd-ddTdd:dd:ddZ";
        let mut text = String::new();
        for p in PATTERN.chars() {
            let c = self.peek();
            let ok = match (p, c) {
                ('d', Some(c)) => c.is_ascii_digit(),
                (p, Some(c)) => p == c,
                (_, None) => false,
            };
            if !ok {
                return match p {
                    'd' => self.err(format!(
                        "Expected a digit in ISO8601 datetime, but found '{}' instead.",
                        show(c)
                    )),
                    p => self.err(format!(
                        "Expected '{p}' in ISO8601 datetime, but found '{}' instead.",
                        show(c)
                    )),
                };
            }
            text.push(self.bump().unwrap_or_default());
        }
        let num = |a: usize, b: usize| text[a..b].parse::<u32>().unwrap_or(0);
        let (mo, d, h, mi, s) = (num(5, 7), num(8, 10), num(11, 13), num(14, 16), num(17, 19));
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
            return self.err(format!("Invalid ISO8601 datetime '{text}'"));
        }
        Ok(Value::Datetime(text))
    }

    // ----- variables ------------------------------------------------------

    fn parse_variable(&mut self, pos: Pos) -> Result<Item, ConfigError> {
        self.bump(); // '$'
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if ends_bare(c) {
                break;
            }
            name.push(c);
            self.bump();
        }
        // An unquoted bcrypt hash (`$2a$...`) is a literal string.
        if name.starts_with("2a$") {
            return Ok(Item::new(Value::String(format!("${name}")), pos));
        }
        // Innermost enclosing map first, then outwards.
        for scope in self.scopes.iter_mut().rev() {
            if let Some(entry) = scope.get_exact_mut_entry(&name) {
                entry.used_as_variable = true;
                let left = MAX_COPIED_VALUES - self.copied.get();
                let size = entry.item.size_up_to(left);
                if size > left {
                    let line = pos.line;
                    return Err(ConfigError::at(
                        pos,
                        format!(
                            "variable reference for '{name}' on line {line} expands to more \
                             than {MAX_COPIED_VALUES} values"
                        ),
                    ));
                }
                self.copied.set(self.copied.get() + size);
                let mut item = entry.item.clone();
                item.pos = pos;
                return Ok(item);
            }
        }
        let line = pos.line;
        let Some(text) = (self.env)(&name) else {
            return Err(ConfigError::at(
                pos,
                format!("variable reference for '{name}' on line {line} can not be found"),
            ));
        };
        if self.env_resolving.contains(&name) {
            return Err(ConfigError::at(
                pos,
                format!("variable reference cycle for '{name}'"),
            ));
        }
        if self.env_resolving.len() >= MAX_ENV_DEPTH {
            return Err(ConfigError::at(
                pos,
                format!("variable reference for '{name}' on line {line} nests too deeply"),
            ));
        }
        let value = self.parse_env_value(&name, &text).map_err(|e| {
            ConfigError::at(
                pos.clone(),
                format!(
                    "variable reference for '{name}' on line {line} could not be parsed: {}",
                    e.message
                ),
            )
        })?;
        Ok(Item::new(value, pos))
    }

    /// Parses an environment variable's text as a single config value.
    fn parse_env_value(&mut self, name: &str, text: &str) -> Result<Value, ConfigError> {
        let mut resolving = self.env_resolving.clone();
        resolving.push(name.to_string());
        let mut sub = Parser {
            src: text.chars().collect(),
            i: 0,
            line: 1,
            col: 1,
            file: Arc::new(PathBuf::from(format!("${name}"))),
            env: self.env,
            scopes: vec![Map::new()],
            depth: self.depth,
            include_stack: self.include_stack,
            copied: self.copied,
            env_resolving: resolving,
        };
        sub.skip_spaces();
        if sub.peek().is_none() {
            return Ok(Value::String(String::new()));
        }
        let item = sub.parse_value()?;
        sub.expect_entry_end(Ctx::Top)?;
        sub.skip_blank();
        if let Some(c) = sub.peek() {
            return sub.err(format!(
                "Expected a top-level value to end with a new line, comment or EOF, but got '{}' instead.",
                show(Some(c))
            ));
        }
        Ok(item.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Map {
        match parse_str_with_env(text, Path::new("/nonexistent/t.conf"), &no_env) {
            Ok(m) => m,
            Err(e) => panic!("unexpected error for {text:?}: {e}"),
        }
    }

    fn parse_err(text: &str) -> ConfigError {
        match parse_str_with_env(text, Path::new("/nonexistent/t.conf"), &no_env) {
            Ok(m) => panic!("expected error for {text:?}, got {m:?}"),
            Err(e) => e,
        }
    }

    fn val(text: &str) -> Value {
        parse(&format!("v: {text}\n"))
            .get("v")
            .expect("v")
            .value
            .clone()
    }

    fn s(x: &str) -> Value {
        Value::String(x.to_string())
    }

    #[test]
    fn separators() {
        for t in [
            "a = 1",
            "a: 1",
            "a 1",
            "a=1",
            "a:1",
            "a\t1",
            "  a   =   1  ",
        ] {
            assert_eq!(parse(t).get("a").unwrap().value, Value::Int(1), "{t}");
        }
        // whitespace separator lets the value start on a later line
        assert_eq!(parse("a\n\n  b").get("a").unwrap().value, s("b"));
    }

    #[test]
    fn entry_terminators() {
        let m = parse("a: 1; b: 2, c: 3\nd: 4 # x\ne: 5 // y\n");
        let keys: Vec<&str> = m.keys().collect();
        assert_eq!(keys, ["a", "b", "c", "d", "e"]);
        let m = parse("x { a: 1; b: 2, c: 3 }");
        assert_eq!(m.get("x").unwrap().value.as_map().unwrap().len(), 3);
    }

    #[test]
    fn comments() {
        let m = parse("# c\n// c\na: 1 # c\nb: [1, # c\n 2 // c\n]\n  # end");
        assert_eq!(m.len(), 2);
        assert_eq!(m.get("b").unwrap().value.as_array().unwrap().len(), 2);
        // not comments inside bare strings
        assert_eq!(val("abc#c"), s("abc#c"));
        assert_eq!(val("a//b"), s("a//b"));
        assert_eq!(val("a // c"), s("a"));
        assert_eq!(val("1//c"), s("1//c"));
        assert_eq!(val("1.5// c"), Value::Float(1.5));
    }

    #[test]
    fn wrapped_document_and_stray_braces() {
        assert_eq!(parse("{a: 2000}").get("a").unwrap().value, Value::Int(2000));
        assert_eq!(parse("{\n a: 1\n}\n b: 2").len(), 2);
        let m = parse("cluster { port: 1 }}}");
        assert_eq!(m.len(), 1);
        assert!(parse("}").is_empty());
        assert!(parse("").is_empty());
        assert!(parse("  \n# only comment\n").is_empty());
    }

    #[test]
    fn maps_nested() {
        let m = parse("a { b { c: 1 }, d: [ {e: f} ] }");
        let a = m.get("a").unwrap().value.as_map().unwrap();
        let b = a.get("b").unwrap().value.as_map().unwrap();
        assert_eq!(b.get("c").unwrap().value, Value::Int(1));
        let d = a.get("d").unwrap().value.as_array().unwrap();
        assert_eq!(d[0].value.as_map().unwrap().get("e").unwrap().value, s("f"));
        assert_eq!(
            parse("a {}").get("a").unwrap().value,
            Value::Map(Map::new())
        );
        assert_eq!(
            parse("a: {}").get("a").unwrap().value,
            Value::Map(Map::new())
        );
    }

    #[test]
    fn arrays() {
        let want = Value::Array(vec![]);
        assert_eq!(val("[]"), want);
        for t in [
            "[a, b, c]",
            "[a, b, c,]",
            "[\na\nb,\nc\n]",
            "[\"a\", 'b', c]",
            "[ a ,b , c ]",
        ] {
            let v = val(t);
            let xs: Vec<&str> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.value.as_str().unwrap())
                .collect();
            assert_eq!(xs, ["a", "b", "c"], "{t}");
        }
        let v = val("[1, 2.5, true, \"x\", [y], {z: 1}]");
        let a = v.as_array().unwrap();
        assert_eq!(a[0].value, Value::Int(1));
        assert_eq!(a[1].value, Value::Float(2.5));
        assert_eq!(a[2].value, Value::Bool(true));
        assert_eq!(a[3].value, s("x"));
        assert!(matches!(a[4].value, Value::Array(_)));
        assert!(matches!(a[5].value, Value::Map(_)));
    }

    #[test]
    fn array_errors() {
        let e = parse_err("a: [a b]");
        assert!(e.message.contains("Expected an array value terminator \",\" or an array terminator \"]\", but got 'b' instead."), "{e}");
        assert!(parse_err("a: [a; b]").message.contains("but got ';'"));
        assert_eq!(
            parse_err("a: [a,,b]").message,
            "Unexpected array value terminator ','."
        );
        assert_eq!(
            parse_err("a: [,a]").message,
            "Unexpected array value terminator ','."
        );
        assert_eq!(
            parse_err("a: [a,").message,
            "Unexpected EOF processing array."
        );
        assert_eq!(
            parse_err("a: [").message,
            "Unexpected EOF processing array."
        );
        assert!(parse_err("a: [}]").message.contains("Expected value"));
    }

    #[test]
    fn strings() {
        assert_eq!(val(r#""a\tb\n\r\"\\\x41""#), s("a\tb\n\r\"\\A"));
        assert_eq!(val(r"'a\tb\q'"), s(r"a\tb\q"));
        assert_eq!(val("\"a\nb\""), s("a\nb"));
        assert_eq!(val("\"\""), s(""));
        assert_eq!(val("''"), s(""));
        assert_eq!(val("\"true\""), s("true"));
        assert_eq!(val("\"12\""), s("12"));
        assert_eq!(val("\"héllo ✓\""), s("héllo ✓"));
    }

    #[test]
    fn bare_strings() {
        for (t, want) in [
            ("hello", "hello"),
            ("0.0.0.0", "0.0.0.0"),
            ("127.0.0.1:4222", "127.0.0.1:4222"),
            ("nats://a:b@host:4222", "nats://a:b@host:4222"),
            ("1.2.3", "1.2.3"),
            ("1.5.", "1.5."),
            ("2s", "2s"),
            ("10ms", "10ms"),
            ("1m30s", "1m30s"),
            ("1e5", "1e5"),
            ("5kbx", "5kbx"),
            ("1:2", "1:2"),
            ("1_000", "1_000"),
            ("1#c", "1#c"),
            ("+5", "+5"),
            ("a=b", "a=b"),
            ("a:b", "a:b"),
            ("a{b", "a{b"),
            ("a[b", "a[b"),
            ("a\"b", "a\"b"),
            ("a\\tb", "a\tb"),
            ("a\\x41b", "aAb"),
            ("a'", "a"),
            ("tru", "tru"),
            ("truex", "truex"),
            ("yesno", "yesno"),
            ("#x", "#x"),
            ("/usr/local/x.pem", "/usr/local/x.pem"),
        ] {
            assert_eq!(val(t), s(want), "{t}");
        }
    }

    #[test]
    fn block_strings() {
        assert_eq!(val("(\nhello\n)"), s("\nhello\n"));
        assert_eq!(val("(hello\n)"), s("hello\n"));
        assert_eq!(val("( a ) b\n)"), s(" a ) b\n"));
        assert_eq!(val("(\n  line1\n  line2\n)"), s("\n  line1\n  line2\n"));
        assert_eq!(
            parse_err("a: (hello)").message,
            "Unexpected EOF processing block."
        );
        assert_eq!(
            parse_err("a: (\n  hello\n  )").message,
            "Unexpected EOF processing block."
        );
        assert_eq!(
            parse("a: (\nx\n)\nb: 1").get("b").unwrap().value,
            Value::Int(1)
        );
    }

    #[test]
    fn integers_and_suffixes() {
        for (t, want) in [
            ("0", 0i64),
            ("007", 7),
            ("4222", 4222),
            ("-1", -1),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
            ("1k", 1000),
            ("1K", 1000),
            ("2kb", 2048),
            ("2KB", 2048),
            ("2kB", 2048),
            ("2ki", 2048),
            ("2kib", 2048),
            ("2KiB", 2048),
            ("1m", 1_000_000),
            ("1mb", 1 << 20),
            ("1Mib", 1 << 20),
            ("2MB", 2_097_152),
            ("1g", 1_000_000_000),
            ("1gb", 1 << 30),
            ("1t", 1_000_000_000_000),
            ("1tb", 1 << 40),
            ("1p", 1_000_000_000_000_000),
            ("1pb", 1 << 50),
            ("1e", 1_000_000_000_000_000_000),
            ("1eb", 1 << 60),
            ("-2k", -2000),
            ("-5k", -5000),
        ] {
            assert_eq!(val(t), Value::Int(want), "{t}");
        }
        // overflow through a suffix wraps like the reference (no error)
        assert!(matches!(val("10000000000000eb"), Value::Int(_)));
        assert_eq!(val("1b"), s("1b"));
        assert_eq!(val("1x"), s("1x"));
    }

    #[test]
    fn integer_errors() {
        assert_eq!(
            parse_err("a: 9223372036854775808").message,
            "integer '9223372036854775808' is out of the range"
        );
        assert_eq!(
            parse_err("a: -\n").message,
            "Expected a digit but got '\\n'."
        );
        assert_eq!(
            parse_err("a: -abc").message,
            "Expected a digit but got 'a'."
        );
        assert_eq!(parse_err("a: - 5").message, "Expected a digit but got ' '.");
        assert!(parse_err("a: -5s").message.contains("but got 's' instead"));
    }

    #[test]
    fn floats() {
        assert_eq!(val("1.5"), Value::Float(1.5));
        assert_eq!(val("-1.5"), Value::Float(-1.5));
        assert_eq!(val("0.25"), Value::Float(0.25));
        assert_eq!(parse_err("a: .5").message, "Floats must start with a digit");
        assert_eq!(parse_err("a: .foo").pos.unwrap().col, 4);
        assert_eq!(
            parse_err("a: 1.\n").message,
            "Floats must have a digit after the '.', but got '\\n' instead."
        );
        assert_eq!(
            parse_err("a: 1.a").message,
            "Floats must have a digit after the '.', but got 'a' instead."
        );
        assert!(parse_err("a: 1.5e3")
            .message
            .contains("but got 'e' instead"));
        assert!(parse_err("a: 1.5k").message.contains("but got 'k' instead"));
    }

    #[test]
    fn booleans() {
        for t in ["true", "TRUE", "True", "tRuE", "yes", "YES", "on", "On"] {
            assert_eq!(val(t), Value::Bool(true), "{t}");
        }
        for t in ["false", "FALSE", "no", "No", "off", "OFF"] {
            assert_eq!(val(t), Value::Bool(false), "{t}");
        }
        assert_eq!(val("'yes'"), s("yes"));
    }

    #[test]
    fn datetimes() {
        assert_eq!(
            val("2020-01-01T00:00:00Z"),
            Value::Datetime("2020-01-01T00:00:00Z".into())
        );
        assert_eq!(
            parse_err("a: 2020-01-01\n").message,
            "Expected 'T' in ISO8601 datetime, but found '\\n' instead."
        );
        assert_eq!(
            parse_err("a: 2020-01-01T00:00:00+01:00").message,
            "Expected 'Z' in ISO8601 datetime, but found '+' instead."
        );
        assert_eq!(
            parse_err("a: 1-").message,
            "All ISO8601 dates must be in full Zulu form."
        );
        assert!(parse_err("a: 1999-01-01T00:00:00Zx")
            .message
            .contains("but got 'x'"));
        assert!(parse_err("a: 2020-13-01T00:00:00Z")
            .message
            .contains("Invalid ISO8601"));
    }

    #[test]
    fn keys() {
        let m = parse("a.b: 1\na-b: 2\n\"a b\": 3\n'c d' = 4\n\"\": 5\nx{a: 6\na\"b: 7\nA.B: 8");
        assert_eq!(m.get_exact("a.b").unwrap().value, Value::Int(1));
        assert_eq!(m.get_exact("a-b").unwrap().value, Value::Int(2));
        assert_eq!(m.get_exact("a b").unwrap().value, Value::Int(3));
        assert_eq!(m.get_exact("c d").unwrap().value, Value::Int(4));
        assert_eq!(m.get_exact("").unwrap().value, Value::Int(5));
        assert_eq!(m.get_exact("x{a").unwrap().value, Value::Int(6));
        assert_eq!(m.get_exact("a\"b").unwrap().value, Value::Int(7));
        // case-insensitive lookup returns the last match
        assert_eq!(m.get("a.b").unwrap().value, Value::Int(8));
        assert_eq!(parse_err(" = 1").message, "Unexpected key separator '='");
        assert_eq!(parse_err(": 1").message, "Unexpected key separator ':'");
    }

    #[test]
    fn duplicate_keys_later_wins() {
        let m = parse("port: 1\nhost: h\nport: 2");
        assert_eq!(m.len(), 2);
        assert_eq!(m.get("port").unwrap().value, Value::Int(2));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["host", "port"]);
        // different case: both kept, get() returns the later one
        let m = parse("Port: 1\nport: 2");
        assert_eq!(m.len(), 2);
        assert_eq!(m.get("PORT").unwrap().value, Value::Int(2));
    }

    #[test]
    fn missing_values() {
        assert_eq!(parse_err("a:").message, "Expected value but found EOF");
        assert_eq!(
            parse_err("a:\nb: 1").message,
            "Expected value but found new line"
        );
        assert_eq!(
            parse_err("a = \n").message,
            "Expected value but found new line"
        );
        assert!(parse_err("a").message.contains("has no value"));
        assert!(parse_err("a: x, b").message.contains("has no value"));
        assert!(parse_err("a: ,")
            .message
            .contains("Expected value but found ','"));
    }

    #[test]
    fn top_level_terminator_errors() {
        let e = parse_err("a: 1 2");
        assert_eq!(
            e.message,
            "Expected a top-level value to end with a new line, comment or EOF, but got '2' instead."
        );
        assert_eq!(
            (e.pos.as_ref().unwrap().line, e.pos.as_ref().unwrap().col),
            (1, 6)
        );
        assert!(parse_err("a: hello world").message.contains("but got 'w'"));
        assert!(parse_err("a: \"a\"b").message.contains("but got 'b'"));
        assert!(parse_err("a: a'b").message.contains("but got 'b'"));
        assert!(parse_err("a: a]b").message.contains("but got ']'"));
    }

    #[test]
    fn map_errors() {
        let e = parse_err("cluster {");
        assert_eq!(e.message, "Unexpected EOF processing map.");
        assert_eq!(e.pos.unwrap().line, 1);
        assert_eq!(
            parse_err("a { b { c: 1 }").message,
            "Unexpected EOF processing map."
        );
        assert_eq!(
            parse_err("c { name: a port: 1 }").message,
            "Expected a map value terminator \",\" or a map terminator \"}\", but got 'p' instead."
        );
        assert_eq!(
            parse_err("c { a: 1,, b: 2 }").message,
            "Unexpected map value terminator ','."
        );
    }

    #[test]
    fn string_errors() {
        for t in ["a: \"abc", "a: 'abc", "\"abc: 1", "a: \"abc\\"] {
            let e = parse_err(t);
            assert!(
                e.message.starts_with("Unexpected EOF") || e.message.starts_with("Invalid escape"),
                "{t}: {e}"
            );
        }
        let e = parse_err("a: \"a\\qb\"");
        assert_eq!(
            e.message,
            "Invalid escape character 'q'. Only the following escape characters are allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\."
        );
        assert!(parse_err("a: \"a\\u0041\"").message.contains("'u'"));
        assert!(parse_err("a: \"a\\/\"").message.contains("'/'"));
        assert!(parse_err("a: a\\qb")
            .message
            .contains("Invalid escape character 'q'"));
        assert_eq!(
            parse_err("a: \"a\\x4\"").message,
            "Expected two hexadecimal digits after '\\x', but got '4\"'"
        );
    }

    #[test]
    fn error_positions_and_display() {
        let e = parse_err("a: 1\nb {\n  c: \"x\\q\"\n}");
        let p = e.pos.clone().unwrap();
        assert_eq!((p.line, p.col), (3, 9));
        assert_eq!(p.go_col(), 8);
        assert!(
            e.to_string()
                .starts_with("/nonexistent/t.conf:3:9: Invalid escape"),
            "{e}"
        );
        let no_pos = ConfigError::new(None, "boom");
        assert_eq!(no_pos.to_string(), "boom");
    }

    #[test]
    fn item_and_key_positions() {
        let m = parse("a: 1\n  bb =   \"x\"\nc {\n   d: [1,\n  2]\n}");
        let e = m.get_entry("bb").unwrap();
        assert_eq!((e.key_pos.line, e.key_pos.col), (2, 3));
        assert_eq!((e.item.pos.line, e.item.pos.col), (2, 10));
        let c = m.get("c").unwrap().value.as_map().unwrap();
        let d = c.get_entry("d").unwrap();
        assert_eq!((d.key_pos.line, d.key_pos.col), (4, 4));
        let arr = d.item.value.as_array().unwrap();
        assert_eq!((arr[1].pos.line, arr[1].pos.col), (5, 3));
        assert_eq!(
            m.get("a").unwrap().pos.file.as_path(),
            Path::new("/nonexistent/t.conf")
        );
    }

    #[test]
    fn variables() {
        let m = parse("PORTV = 15301\nport: $PORTV");
        assert_eq!(m.get("port").unwrap().value, Value::Int(15301));
        assert!(m.is_used_variable("PORTV"));
        assert!(!m.is_used_variable("port"));
        // enclosing scopes, innermost first
        let m = parse("x: 1\nc { x: 2, port: $x }\nd { e { f: $x } }");
        let c = m.get("c").unwrap().value.as_map().unwrap();
        assert_eq!(c.get("port").unwrap().value, Value::Int(2));
        assert!(c.is_used_variable("x"));
        let d = m.get("d").unwrap().value.as_map().unwrap();
        let e = d.get("e").unwrap().value.as_map().unwrap();
        assert_eq!(e.get("f").unwrap().value, Value::Int(1));
        assert!(m.is_used_variable("x"));
        // later definition wins; variables keep structure
        let m = parse("x: 1\nx: 2\ny: $x\nl: [a, {b: c}]\nz: $l");
        assert_eq!(m.get("y").unwrap().value, Value::Int(2));
        assert_eq!(m.get("z").unwrap().value, m.get("l").unwrap().value);
        // dotted and dashed names are whole names
        assert_eq!(
            parse("a.b: 1\nv: $a.b").get("v").unwrap().value,
            Value::Int(1)
        );
        assert_eq!(parse("a-b: x\nv: $a-b").get("v").unwrap().value, s("x"));
        // arrays of variables
        let m = parse("u: 1\nv: [$u, $u]");
        assert_eq!(m.get("v").unwrap().value.as_array().unwrap().len(), 2);
        // position of a variable-valued item is the reference
        let m = parse("x: 1\n  y:   $x");
        assert_eq!(m.get("y").unwrap().pos.col, 8);
    }

    #[test]
    fn nested_references_are_bounded() {
        // 8 levels of 16 references each would copy 16^8 values: refused, quickly.
        let mut text = String::from("v0: [1, 2, 3]\n");
        for level in 1..=8 {
            let refs = vec![format!("$v{}", level - 1); 16].join(", ");
            text.push_str(&format!("v{level}: [{refs}]\n"));
        }
        let started = std::time::Instant::now();
        let e = parse_err(&text);
        assert!(e.message.contains("expands to more than"), "{}", e.message);
        assert!(e.message.contains("'v"), "{}", e.message);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        // Four levels (16^4 copies of a 4-value array, about 300k values) still parse.
        let text: String = text.lines().take(5).map(|l| format!("{l}\n")).collect();
        let m = parse(&text);
        let v4 = m.get("v4").unwrap().value.as_array().unwrap();
        assert_eq!(v4.len(), 16);
    }

    #[test]
    fn variable_errors() {
        let e = parse_err("a: $NOPE");
        assert_eq!(
            e.message,
            "variable reference for 'NOPE' on line 1 can not be found"
        );
        assert_eq!(e.pos.unwrap().col, 4);
        assert!(parse_err("a {\n  b: $NOPE\n}")
            .message
            .contains("on line 2"));
        // must be defined earlier
        assert!(parse_err("a: $x\nx: 1").message.contains("'x'"));
        // not visible outside its map
        assert!(parse_err("c { x: 2 }\na: $x").message.contains("'x'"));
        // case-sensitive
        assert!(parse_err("X: 1\na: $x").message.contains("'x'"));
        assert!(parse_err("a: $").message.contains("for ''"));
        // no interpolation
        assert!(parse_err("p: 1\na: 127.0.0.1:$p")
            .message
            .contains("but got '$'"));
        assert!(parse_err("a: 1.2$").message.contains("but got '$'"));
        assert_eq!(val("a$b"), s("a$b"));
        assert_eq!(val("1$"), s("1$"));
        assert!(parse_err("a: $2b$11$abc").message.contains("'2b$11$abc'"));
    }

    #[test]
    fn bcrypt_literal() {
        assert_eq!(val("$2a$11$abcdef"), s("$2a$11$abcdef"));
        assert_eq!(val("\"$2b$11$abc\""), s("$2b$11$abc"));
    }

    #[test]
    fn environment_variables() {
        let env = |k: &str| -> Option<String> {
            match k {
                "MYV" => Some("4222".into()),
                "MYS" => Some("\"hi\"".into()),
                "MYB" => Some("yes".into()),
                "MYK" => Some("1k".into()),
                "MYA" => Some("[a, b]".into()),
                "MYM" => Some("{a: b}".into()),
                "MYU" => Some("nats://x:1".into()),
                "MYE" => Some("".into()),
                "MYX" => Some("a b".into()),
                "MYC" => Some("$MYC".into()),
                "A1" => Some("$A2".into()),
                "A2" => Some("$A1".into()),
                "IND" => Some("$MYV".into()),
                "BAD" => Some("\"x".into()),
                "x" => Some("from-env".into()),
                _ => None,
            }
        };
        let o = Path::new("/nonexistent/t.conf");
        let m = parse_str_with_env(
            "a: $MYV\nb: $MYS\nc: $MYB\nd: $MYK\ne: $MYA\nf: $MYM\ng: $MYU\nh: $MYE\ni: $IND\nx: local\nj: $x\nk { l: $x }",
            o,
            &env,
        )
        .unwrap();
        assert_eq!(m.get("a").unwrap().value, Value::Int(4222));
        assert_eq!(m.get("b").unwrap().value, s("hi"));
        assert_eq!(m.get("c").unwrap().value, Value::Bool(true));
        assert_eq!(m.get("d").unwrap().value, Value::Int(1000));
        assert_eq!(m.get("e").unwrap().value.as_array().unwrap().len(), 2);
        assert!(m.get("f").unwrap().value.as_map().is_some());
        assert_eq!(m.get("g").unwrap().value, s("nats://x:1"));
        assert_eq!(m.get("h").unwrap().value, s(""));
        assert_eq!(m.get("i").unwrap().value, Value::Int(4222));
        assert_eq!(
            m.get("j").unwrap().value,
            s("local"),
            "file variables shadow env"
        );
        assert_eq!(m.get("a").unwrap().pos.col, 4);
        assert_eq!(
            parse_str_with_env("y: $x", o, &env)
                .unwrap()
                .get("y")
                .unwrap()
                .value,
            s("from-env")
        );

        let e = parse_str_with_env("a: $MYX", o, &env).unwrap_err();
        assert!(e.message.starts_with("variable reference for 'MYX' on line 1 could not be parsed: Expected a top-level value"), "{e}");
        let e = parse_str_with_env("a: $MYC", o, &env).unwrap_err();
        assert!(
            e.message.contains("variable reference cycle for 'MYC'"),
            "{e}"
        );
        let e = parse_str_with_env("a: $A1", o, &env).unwrap_err();
        assert!(
            e.message.contains("variable reference cycle for 'A1'"),
            "{e}"
        );
        let e = parse_str_with_env("\n a: $BAD", o, &env).unwrap_err();
        assert!(
            e.message
                .contains("on line 2 could not be parsed: Unexpected EOF."),
            "{e}"
        );
        assert_eq!(e.pos.unwrap().line, 2);
    }

    /// A scratch directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!(
                "natrium-conf-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).unwrap();
            }
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn includes() {
        let d = TempDir::new("inc");
        d.write("sub/a.conf", "server_name: inc\nw: 5\n");
        d.write("sub/b.conf", "include ./a.conf\nextra: 1\n");
        d.write("sub/auth.conf", "user: u\npass: p\n");
        let main = d.write(
            "main.conf",
            "include sub/a.conf\ninclude \"sub/b.conf\"; include 'sub/a.conf'\nport: $w\nauthorization {\n  include ./sub/auth.conf\n  timeout: 2\n}\nINCLUDE sub/a.conf # upper case\n",
        );
        let m = parse_file_with_env(&main, &no_env).unwrap();
        assert_eq!(m.get("server_name").unwrap().value, s("inc"));
        assert_eq!(m.get("port").unwrap().value, Value::Int(5));
        assert_eq!(m.get("extra").unwrap().value, Value::Int(1));
        let auth = m.get("authorization").unwrap().value.as_map().unwrap();
        assert_eq!(auth.get("user").unwrap().value, s("u"));
        assert_eq!(auth.get("timeout").unwrap().value, Value::Int(2));
        // positions point into the included file
        let e = m.get_entry("server_name").unwrap();
        assert!(e.key_pos.file.ends_with("sub/a.conf"), "{}", e.key_pos);
        assert_eq!(e.key_pos.line, 1);
        // `include:` with an explicit separator is an ordinary key
        let m = parse("include: x");
        assert_eq!(m.get("include").unwrap().value, s("x"));
        // included files do not see the includer's variables
        d.write("v.conf", "server_name: $v\n");
        let main = d.write("m2.conf", "v: abc\ninclude v.conf\n");
        let e = parse_file_with_env(&main, &no_env).unwrap_err();
        assert!(e.message.contains("variable reference for 'v'"), "{e}");
        assert!(e.pos.unwrap().file.ends_with("v.conf"));
        // parse_str resolves includes relative to the origin's directory
        let m =
            parse_str_with_env("include sub/a.conf", &d.0.join("virtual.conf"), &no_env).unwrap();
        assert_eq!(m.get("w").unwrap().value, Value::Int(5));
    }

    #[test]
    fn include_errors() {
        let d = TempDir::new("incerr");
        let main = d.write("main.conf", "a: 1\n  include ./nope.conf\n");
        let e = parse_file_with_env(&main, &no_env).unwrap_err();
        assert!(
            e.message
                .starts_with("error parsing include file './nope.conf', open "),
            "{e}"
        );
        let p = e.pos.unwrap();
        assert_eq!((p.line, p.col), (2, 3));
        // cycles: self, and a -> b -> a
        let selfc = d.write("self.conf", "include self.conf\n");
        let e = parse_file_with_env(&selfc, &no_env).unwrap_err();
        assert!(e.message.contains("include cycle"), "{e}");
        d.write("a.conf", "include b.conf\n");
        d.write("b.conf", "x: 1\ninclude ./a.conf\n");
        let e = parse_file_with_env(&d.0.join("a.conf"), &no_env).unwrap_err();
        assert!(e.message.contains("include cycle"), "{e}");
        assert!(e.pos.unwrap().file.ends_with("b.conf"));
        // the same file included twice (not nested) is fine
        d.write("leaf.conf", "y: 2\n");
        let ok = d.write("twice.conf", "include leaf.conf\ninclude leaf.conf\n");
        assert_eq!(parse_file_with_env(&ok, &no_env).unwrap().len(), 1);
        // errors inside an included file carry that file's position
        d.write("broken.conf", "\n\nq: \"x\n");
        let m = d.write("usebroken.conf", "include broken.conf\n");
        let e = parse_file_with_env(&m, &no_env).unwrap_err();
        assert!(e.to_string().contains("broken.conf:"), "{e}");
        assert_eq!(
            parse_err("include \"\"").message,
            "include requires a file name"
        );
        // missing top-level file
        let e = parse_file(&d.0.join("missing.conf")).unwrap_err();
        assert!(e.message.contains("missing.conf"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!("a: {}", "[".repeat(100_000));
        assert!(parse_err(&text).message.contains("nesting"));
        let text = format!("a: {}", "{b: ".repeat(100_000));
        assert!(parse_err(&text).message.contains("nesting"));
        let ok = format!("a: {}1{}", "[".repeat(50), "]".repeat(50));
        parse(&ok);
    }

    #[test]
    fn crlf_and_tabs() {
        let m = parse("a: 1\r\nb {\r\n\tc: x\r\n}\r\n");
        assert_eq!(m.get("a").unwrap().value, Value::Int(1));
        let b = m.get("b").unwrap().value.as_map().unwrap();
        assert_eq!(b.get("c").unwrap().value, s("x"));
    }

    const REAL_WORLD: &str = r#"
# A production-ish server
server_name: "n1-east"
listen: 0.0.0.0:4222
http: 127.0.0.1:8222
max_payload: 8MB
max_pending: 64MB
ping_interval: "2m"
write_deadline: 10s
lame_duck_duration: "2m"
debug: false
trace: off
logtime: true
server_tags: ["region:east", az:1a]

tls {
  cert_file: "/etc/nats/certs/server.pem"
  key_file:  "/etc/nats/certs/server-key.pem"
  ca_file:   /etc/nats/certs/ca.pem
  verify:    true
  timeout:   2.5
}

PASS: "$2a$11$DMmLYeXpoXN.p6W8kfFFlOc5I7Lw2ac2ki6bnN4Kad7G3JQRA9Wr6"

authorization {
  default_permissions = {
    publish = ["SANDBOX.*", "$JS.API.INFO"]
    subscribe = ["PUBLIC.>", "_INBOX.>"]
  }
  ADMIN = { publish = ">", subscribe = ">" }
  users = [
    {user: admin,   password: $PASS, permissions: $ADMIN}
    {user: client,  password: 'pl@in'}
    {nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4}
  ]
  timeout: 2
}

accounts: {
  SYS: { users: [{user: sys, password: sys}] }
  APP: {
    jetstream: enabled
    users: [{user: a, password: a}]
    exports: [
      {stream: "orders.>"}
      {service: "help.>", response_type: stream}
    ]
    imports: [
      {stream: {account: OTHER, subject: "x.>"}, prefix: imported}
    ]
    mappings: { "foo": "bar", "weighted": [{destination: "a", weight: 50%}, {destination: "b", weight: 50%}] }
  }
}
system_account: SYS

cluster {
  name: east
  listen: 0.0.0.0:6222
  authorization { user: route, password: $PASS, timeout: 0.5 }
  routes = [
    nats-route://route:pw@10.0.0.2:6222
    nats-route://route:pw@10.0.0.3:6222
  ]
  pool_size: 3
  compression: { mode: s2_auto, rtt_thresholds: [10ms, 50ms, 100ms] }
}

gateway {
  name: east
  port: 7222
  gateways: [
    {name: west, urls: ["nats://w1:7222", "nats://w2:7222"]}
  ]
}

leafnodes {
  port: 7422
  remotes = [
    { url: "tls://connect.ngs.global:7422", credentials: "/etc/nats/ngs.creds", account: APP }
    { urls: [nats-leaf://a:7422, nats-leaf://b:7422] }
  ]
  tls { handshake_first: true }
}

jetstream {
  store_dir: /data/nats/js
  max_memory_store: 1G
  max_file_store: 10TB
  domain: hub
  sync_interval: always
}

mqtt { port: 1883 }
websocket { port: 8080, no_tls: true }
"#;

    #[test]
    fn real_world_config() {
        let m = parse(REAL_WORLD);
        assert_eq!(m.get("listen").unwrap().value, s("0.0.0.0:4222"));
        assert_eq!(m.get("max_payload").unwrap().value, Value::Int(8 << 20));
        assert_eq!(m.get("write_deadline").unwrap().value, s("10s"));
        assert_eq!(m.get("trace").unwrap().value, Value::Bool(false));
        assert!(m.is_used_variable("PASS"));
        let auth = m.get("authorization").unwrap().value.as_map().unwrap();
        assert!(auth.is_used_variable("ADMIN"));
        let users = auth.get("users").unwrap().value.as_array().unwrap();
        assert_eq!(users.len(), 3);
        let admin = users[0].value.as_map().unwrap();
        assert_eq!(
            admin.get("password").unwrap().value,
            s("$2a$11$DMmLYeXpoXN.p6W8kfFFlOc5I7Lw2ac2ki6bnN4Kad7G3JQRA9Wr6")
        );
        assert!(admin.get("permissions").unwrap().value.as_map().is_some());
        let accounts = m.get("accounts").unwrap().value.as_map().unwrap();
        let app = accounts.get("app").unwrap().value.as_map().unwrap();
        assert_eq!(app.get("jetstream").unwrap().value, s("enabled"));
        let mappings = app.get("mappings").unwrap().value.as_map().unwrap();
        let w = mappings.get("weighted").unwrap().value.as_array().unwrap();
        assert_eq!(
            w[0].value.as_map().unwrap().get("weight").unwrap().value,
            s("50%")
        );
        let cluster = m.get("cluster").unwrap().value.as_map().unwrap();
        assert_eq!(
            cluster
                .get("routes")
                .unwrap()
                .value
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let comp = cluster.get("compression").unwrap().value.as_map().unwrap();
        assert_eq!(
            comp.get("rtt_thresholds")
                .unwrap()
                .value
                .as_array()
                .unwrap()[0]
                .value,
            s("10ms")
        );
        let js = m.get("jetstream").unwrap().value.as_map().unwrap();
        assert_eq!(
            js.get("max_memory_store").unwrap().value,
            Value::Int(1_000_000_000)
        );
        assert_eq!(
            js.get("max_file_store").unwrap().value,
            Value::Int(10 << 40)
        );
        let leaf = m.get("leafnodes").unwrap().value.as_map().unwrap();
        assert_eq!(
            leaf.get("remotes").unwrap().value.as_array().unwrap().len(),
            2
        );
        let tls = m.get("tls").unwrap().value.as_map().unwrap();
        assert_eq!(tls.get("timeout").unwrap().value, Value::Float(2.5));
        assert_eq!(m.len(), 23);
    }

    #[test]
    fn real_world_wrapped_and_compact() {
        let m = parse("{\n  port: 4222, http_port: 8222\n  accounts { A { users = [ {user: a, password: b} ] } }\n  no_auth_user: a\n}\n");
        assert_eq!(m.len(), 4);
        let m = parse("port=4222;cluster {name=c;port=6222;routes=[nats://h:6222]};leafnodes={remotes=[{url:\"nats://x:7422\"}]}");
        assert_eq!(m.len(), 3);
        // quirk shared with nats-server: a key runs up to whitespace, `=` or `:`
        let m = parse("cluster{name: c}");
        assert_eq!(m.get_exact("cluster{name").unwrap().value, s("c"));
    }

    /// Tiny xorshift PRNG so the randomized test needs no crates.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn randomized_mutations_never_panic() {
        const ALPHABET: &[char] = &[
            '{', '}', '[', ']', '(', ')', '"', '\'', '\\', '$', '#', '/', '\n', ' ', ',', ';', ':',
            '=', '-', '.', '0', '1', '9', 'k', 'b', 'e', 'T', 'Z', 'x', 'a', 'i', '\t', '\r', 'é',
        ];
        let env = |k: &str| -> Option<String> {
            match k {
                "PASS" => Some("$PASS".into()),
                "a" => Some("[1, {x: $b}]".into()),
                "b" => Some("$a".into()),
                _ => None,
            }
        };
        let seeds: Vec<Vec<char>> = [
            REAL_WORLD,
            "a: 1\nb: [1, 2.5, \"x\\x41\", 'y', (\nblock\n)]\nc { d: $a, e: 2020-01-01T00:00:00Z }\ninclude ./x.conf\n",
            "{x: -1k, y: 1.2.3.4:4222, z: yes}",
        ]
        .iter()
        .map(|s| s.chars().collect())
        .collect();
        let origin = std::env::temp_dir().join("natrium-conf-fuzz-nonexistent/t.conf");
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut ok = 0;
        for _ in 0..3000 {
            let mut text = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(8) {
                let len = text.len();
                match rng.below(5) {
                    0 if len > 0 => {
                        text.remove(rng.below(len));
                    }
                    1 => text.insert(rng.below(len + 1), ALPHABET[rng.below(ALPHABET.len())]),
                    2 if len > 0 => {
                        let a = rng.below(len);
                        let b = (a + rng.below(40)).min(len);
                        let span: Vec<char> = text[a..b].to_vec();
                        let at = rng.below(len + 1);
                        text.splice(at..at, span);
                    }
                    3 if len > 0 => {
                        let a = rng.below(len);
                        let b = rng.below(len);
                        text.swap(a, b);
                    }
                    _ => text.truncate(rng.below(len + 1)),
                }
            }
            let s: String = text.into_iter().collect();
            match parse_str_with_env(&s, &origin, &env) {
                Ok(_) => ok += 1,
                Err(e) => {
                    let p = e.pos.expect("parse errors carry a position");
                    assert!(p.line >= 1 && p.col >= 1);
                }
            }
        }
        assert!(ok > 0);
    }
}
