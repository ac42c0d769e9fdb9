fn main() {
    let path = std::env::args().nth(1).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let t = std::time::Instant::now();
    let r = archdb::ingest::ingest(bytes.into(), Default::default());
    match r {
        Ok(i) => {
            eprintln!("{:?}", t.elapsed());
            println!(
                "{}",
                serde_json::to_string_pretty(&i.graph.summary).unwrap()
            );
            println!("{}", i.graph_hash);
        }
        Err(e) => println!("error: {e}"),
    }
}
