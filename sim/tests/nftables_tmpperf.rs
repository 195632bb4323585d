use sim::nftables::Ruleset;
use sim::time::Instant;
#[test]
fn big() {
    let t1 = std::fs::read_to_string("/tmp/nftx/big.1.nft").unwrap();
    let t2 = std::fs::read_to_string("/tmp/nftx/big.2.nft").unwrap();
    let want = std::fs::read_to_string("/tmp/nftx/big.real").unwrap();
    let mut rs = Ruleset::new();
    let s = std::time::Instant::now();
    rs.apply(&t1, Instant::ZERO).unwrap();
    eprintln!("full: {:?}", s.elapsed());
    let s = std::time::Instant::now();
    rs.apply(&t2, Instant::ZERO).unwrap();
    eprintln!("partial: {:?}", s.elapsed());
    let s = std::time::Instant::now();
    let got = rs.list_ruleset(Instant::ZERO);
    eprintln!("list: {:?}", s.elapsed());
    assert!(got == want, "differs");
}
