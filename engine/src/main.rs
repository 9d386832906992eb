//! The `pgdrill` binary: everything lives in the library.

fn main() {
    std::process::exit(pgdrill::cli::main());
}
