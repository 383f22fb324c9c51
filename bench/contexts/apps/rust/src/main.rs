// bench/contexts/apps/rust: prints a line built with its dependencies, so a
// wrong image shows. bench/apps.sh edits the marked line for the edit scenario.
fn main() {
    let mut a = itoa::Buffer::new();
    let mut r = ryu::Buffer::new();
    let hay = b"rbuild bench rust app";
    let at = memchr::memchr(b'r', &hay[1..]).map_or(0, |i| i + 1);
    let edit = 0; // edit marker
    println!("rust app {} {} {} {}", a.format(1234u32), r.format(1.5f64), at, edit);
}
