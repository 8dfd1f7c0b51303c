//! Every ZooKeeper decoder on arbitrary server bytes: reply header, connect response, watch event,
//! multi response, and the record readers driven by the input itself.
#![no_main]
use faascache_zk::proto;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = proto::connect_response(data);
    let _ = proto::watch_event(data);
    if let Ok((_, body)) = proto::reply(data) {
        let _ = proto::multi_response(body, 4, |s| s);
    }
    let (ops, body) = data.split_at(data.len().min(8));
    let mut r = proto::Reader::new(body);
    for &op in ops {
        let _ = match op % 6 {
            0 => r.i32("f").map(drop),
            1 => r.i64("f").map(drop),
            2 => r.bytes("f").map(drop),
            3 => r.string("f").map(drop),
            4 => r.stat().map(drop),
            _ => r.strings("f").map(drop),
        };
    }
});
