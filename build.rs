fn main() {
    // Migrations are embedded at compile time: rebuild when a file is added or changed.
    println!("cargo:rerun-if-changed=migrations");
}
