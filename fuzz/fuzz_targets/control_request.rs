//! The control socket's requests (one JSON document a line, from any local client): anything
//! decodes to a request or is refused, never a panic; a request reads back as itself once
//! written; and a batch of changes applies to a table or is refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lvs_userspace::logic::{api::Request, ipvsadm::rules::RuleSet};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<Request>(data) else {
        return;
    };
    let written = serde_json::to_string(&request).expect("a request serializes");
    let read: Request = serde_json::from_str(&written)
        .unwrap_or_else(|error| panic!("a request does not read back ({error}): {written}"));
    assert_eq!(read, request, "{written}");
    if let Request::Apply { changes } = &request {
        let _ = RuleSet::default().apply_all(changes);
    }
});
