#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pushwire::fuzzing::resp_reader(data));
