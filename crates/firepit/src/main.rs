fn main() { println!("{}", firepit_guest_bin::GUEST.len()); }
