#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quorate_fuzz::run("read_audit_request", data));
