#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pushwire::fuzzing::cluster_body(data));
