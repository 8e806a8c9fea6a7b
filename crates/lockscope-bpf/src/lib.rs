mod contention_skel {
    include!(concat!(env!("OUT_DIR"), "/contention.skel.rs"));
}
mod probe_skel {
    include!(concat!(env!("OUT_DIR"), "/probe.skel.rs"));
}
