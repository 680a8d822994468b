#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rbuild_registry::fuzz::www_authenticate(data));
