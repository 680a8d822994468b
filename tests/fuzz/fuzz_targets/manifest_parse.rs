#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rbuild_layers::fuzz::manifest_parse(data));
