//! (stub: being written) Length-prefixed frames of postcard values.
