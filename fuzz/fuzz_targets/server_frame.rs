#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| chat_fuzz::server_frame(data));
