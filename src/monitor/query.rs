//! Query parameter decoding with nats-server's (Go `strconv`) error messages.

use super::http::Request;

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A boolean parameter; absent or empty is false.
pub fn bool_param(req: &Request, key: &str) -> Result<bool, String> {
    match req.get(key) {
        None | Some("") => Ok(false),
        Some(v) => parse_bool(v).ok_or_else(|| {
            format!("Error decoding boolean for '{key}': strconv.ParseBool: parsing {v:?}: invalid syntax")
        }),
    }
}

fn int_syntax(v: &str) -> bool {
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())
}

/// An int parameter (Go's `strconv.Atoi`); absent or empty is 0.
pub fn int_param(req: &Request, key: &str) -> Result<i64, String> {
    match req.get(key) {
        None | Some("") => Ok(0),
        Some(v) => {
            if !int_syntax(v) {
                return Err(format!(
                    "Error decoding int for '{key}': strconv.Atoi: parsing {v:?}: invalid syntax"
                ));
            }
            v.parse::<i64>().map_err(|_| {
                format!("Error decoding int for '{key}': strconv.Atoi: parsing {v:?}: value out of range")
            })
        }
    }
}

/// A uint64 parameter (Go's `strconv.ParseUint`); absent or empty is 0.
pub fn uint_param(req: &Request, key: &str) -> Result<u64, String> {
    match req.get(key) {
        None | Some("") => Ok(0),
        Some(v) => {
            if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
                return Err(format!(
                    "Error decoding uint64 for '{key}': strconv.ParseUint: parsing {v:?}: invalid syntax"
                ));
            }
            v.parse::<u64>().map_err(|_| {
                format!("Error decoding uint64 for '{key}': strconv.ParseUint: parsing {v:?}: value out of range")
            })
        }
    }
}

/// `subs`: `detail` (any case), or a boolean. Returns (subs, detail).
pub fn subs_param(req: &Request) -> Result<(bool, bool), String> {
    if req
        .get("subs")
        .is_some_and(|v| v.eq_ignore_ascii_case("detail"))
    {
        return Ok((false, true));
    }
    Ok((bool_param(req, "subs")?, false))
}

/// Connection state filter of `/connz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Open connections (default).
    Open,
    /// Closed connections.
    Closed,
    /// Both.
    All,
}

/// `state=open|closed|all|any`.
pub fn state_param(req: &Request) -> Result<State, String> {
    match req.get("state").unwrap_or("") {
        "" | "open" => Ok(State::Open),
        "closed" => Ok(State::Closed),
        "all" | "any" => Ok(State::All),
        v => Err(format!("Error decoding state for {v}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(q: &str) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            query: crate::monitor::http::parse_query(q),
        }
    }

    #[test]
    fn messages() {
        assert_eq!(
            int_param(&req("limit=abc"), "limit").unwrap_err(),
            "Error decoding int for 'limit': strconv.Atoi: parsing \"abc\": invalid syntax"
        );
        assert_eq!(
            int_param(&req("limit=99999999999999999999"), "limit").unwrap_err(),
            "Error decoding int for 'limit': strconv.Atoi: parsing \"99999999999999999999\": value out of range"
        );
        assert_eq!(int_param(&req("limit=-5"), "limit"), Ok(-5));
        assert_eq!(
            bool_param(&req("subs=x"), "subs").unwrap_err(),
            "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"x\": invalid syntax"
        );
        assert_eq!(subs_param(&req("subs=DETAIL")), Ok((false, true)));
        assert_eq!(
            state_param(&req("state=x")).unwrap_err(),
            "Error decoding state for x"
        );
        assert_eq!(
            uint_param(&req("cid=abc"), "cid").unwrap_err(),
            "Error decoding uint64 for 'cid': strconv.ParseUint: parsing \"abc\": invalid syntax"
        );
    }
}
