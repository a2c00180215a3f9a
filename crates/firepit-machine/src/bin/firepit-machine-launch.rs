//! The machine launcher as a binary of its own, for this crate's tests; the
//! `firepit` binary runs the same code when its argv[1] is
//! [`firepit_machine::LAUNCH_ARG`].

fn main() {
    firepit_machine::launcher_main()
}
