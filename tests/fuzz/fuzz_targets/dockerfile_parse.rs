#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rbuild::fuzz::dockerfile_parse(data));
