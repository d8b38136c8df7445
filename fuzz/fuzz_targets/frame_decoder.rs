//! Arbitrary bytes from a peer: the decoder must return frames, "need more", or an error, and
//! every frame body must decode or be refused, never panic.
#![no_main]

use kahadb::replication::{Decoder, Message, DEFAULT_MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks how the stream is cut into reads.
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step) + 1;
    let mut d = Decoder::new(DEFAULT_MAX_FRAME);
    for chunk in rest.chunks(step) {
        d.push(chunk);
        loop {
            match d.next_frame() {
                Ok(Some(frame)) => {
                    let _ = Message::decode(&frame);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
