#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rbuild_layers::fuzz::tar_apply(data));
