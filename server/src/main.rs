//! `shoal`: the Shoal server.
fn main() {
    eprintln!("shoal: the server is being built (see issues 3-5)");
    std::process::exit(2);
}
