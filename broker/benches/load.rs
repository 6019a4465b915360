//! The load benchmark lands in the next commit.
fn main() {}
