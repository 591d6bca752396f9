#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| chat_fuzz::peer_auth(data));
