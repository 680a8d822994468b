#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rbuild_registry::fuzz::image_reference(data));
