include!("../build-support/torch_link.rs");

fn main() {
    torch_link();
}
