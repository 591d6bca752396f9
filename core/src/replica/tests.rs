//! Handler-level tests: a replica built in a chosen state, one input, the exact outputs.
//! Every step is followed by `check_invariants`.
