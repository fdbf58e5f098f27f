//! Fuzzes the CONNECT document (`natrium::proto::connect::ConnectOpts::merge`), as
//! the client read loop uses it (src/client/conn.rs `on_connect`): the connection's
//! current options are cloned and the CONNECT argument merged onto the clone.
//!
//! The input is merged as is (any bytes, as the JSON may be anything), and it is also
//! sent through the protocol parser as `CONNECT <input>\r\n`, whose argument (the
//! first line, trailing whitespace trimmed) is merged onto the first result, as a
//! second CONNECT on the same connection would be.
//!
//! Checks: no panic; `merge` succeeds only on JSON that is an object or `null`;
//! `null` changes nothing; merging the same document twice equals merging it once.

#![no_main]

use libfuzzer_sys::fuzz_target;
use natrium::proto::connect::ConnectOpts;
use natrium::proto::parser::{parse, Limits, Op, Parsed};

fn merge_checked(start: &ConnectOpts, json: &[u8]) -> Option<ConnectOpts> {
    let mut o = start.clone();
    let ok = o.merge(json).is_ok();
    let doc = serde_json::from_slice::<serde_json::Value>(json);
    if ok {
        match doc {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(serde_json::Value::Null) => assert_eq!(&o, start, "null changed the options"),
            other => panic!("merge accepted {other:?}"),
        }
        let mut again = o.clone();
        assert!(
            again.merge(json).is_ok(),
            "second merge of an accepted document failed"
        );
        assert_eq!(again, o, "merge is not idempotent");
        Some(o)
    } else {
        None
    }
}

fuzz_target!(|data: &[u8]| {
    let first = merge_checked(&ConnectOpts::default(), data);

    let mut line = Vec::with_capacity(data.len() + 10);
    line.extend_from_slice(b"CONNECT ");
    line.extend_from_slice(data);
    line.extend_from_slice(b"\r\n");
    if let Ok(Parsed::Op(Op::Connect(arg), _)) = parse(&line, &Limits::default()) {
        let start = first.unwrap_or_default();
        merge_checked(&start, arg);
    }
});
