//! Reading a whole hash map at the end of a recording: in batches, one
//! system call per few thousand entries, where key-by-key reading takes two
//! per entry (a guest's 250,000 aggregates took 41 s that way under
//! emulation). Kernels without batch operations (before 5.6) are read key by
//! key. Unlike libbpf-rs's batch iterator, an error is returned, never taken
//! for the end of the map.

use std::os::fd::AsRawFd;

use libbpf_rs::{MapCore, MapFlags};

/// A map's entries, as (key, value) bytes.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Entries per batch to start with; doubled when a hash bucket holds more.
const BATCH: usize = 4096;

/// Every (key, value) of a hash map (not a per-CPU one).
pub(crate) fn hash_entries(map: &dyn MapCore) -> Result<Entries, libbpf_rs::Error> {
    match batched(map)? {
        Some(found) => Ok(found),
        None => key_by_key(map),
    }
}

/// The kernel's own "not supported" (not EOPNOTSUPP).
const ENOTSUPP: i32 = 524;

/// None where the kernel refuses batch lookups on this map.
fn batched(map: &dyn MapCore) -> Result<Option<Entries>, libbpf_rs::Error> {
    let (key_size, value_size) = (map.key_size() as usize, map.value_size() as usize);
    let opts = libbpf_sys::bpf_map_batch_opts { sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _, ..Default::default() };
    // The position between batches (a bucket index for hash maps), at least 4 bytes.
    let (mut position, mut next) = (vec![0u8; key_size.max(4)], vec![0u8; key_size.max(4)]);
    let mut started = false;
    let mut batch = BATCH;
    let mut found = vec![];
    loop {
        let (mut keys, mut values) = (vec![0u8; key_size * batch], vec![0u8; value_size * batch]);
        let mut count = batch as u32;
        // SAFETY: the buffers hold `count` keys and values of the map's
        // sizes, and the positions the kernel's batch token.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                map.as_fd().as_raw_fd(),
                if started { position.as_mut_ptr().cast() } else { std::ptr::null_mut() },
                next.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let errno = if ret < 0 { -ret } else { 0 };
        match errno {
            0 | libc::ENOENT => {
                let count = count as usize;
                found.extend(
                    keys.chunks_exact(key_size).zip(values.chunks_exact(value_size)).take(count).map(|(k, v)| (k.to_vec(), v.to_vec())),
                );
                if errno == libc::ENOENT {
                    return Ok(Some(found)); // the last batch
                }
                std::mem::swap(&mut position, &mut next);
                started = true;
            }
            // A bucket holds more entries than a batch: again, bigger.
            libc::ENOSPC => batch *= 2,
            libc::EINTR => {}
            libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP if !started => return Ok(None),
            _ => return Err(libbpf_rs::Error::from_raw_os_error(errno)),
        }
    }
}

fn key_by_key(map: &dyn MapCore) -> Result<Entries, libbpf_rs::Error> {
    let mut found = vec![];
    for key in map.keys() {
        if let Some(value) = map.lookup(&key, MapFlags::ANY)? {
            found.push((key, value));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libbpf_rs::{MapHandle, MapType};

    /// A real hash map in the running kernel (needs root, as the recorder).
    #[test]
    fn batches_read_every_entry_of_a_hash_map_as_key_by_key_reading_does() {
        let opts =
            libbpf_sys::bpf_map_create_opts { sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _, ..Default::default() };
        let map = MapHandle::create(MapType::Hash, Some("entries_test"), 12, 8, 20_000, &opts).expect("creating a hash map (as root)");
        // More entries than one batch holds, with keys of an odd size.
        let wanted: Entries = (0..10_000u32)
            .map(|i| ([i.to_ne_bytes(), (i * 7).to_ne_bytes(), [1, 2, 3, 4]].concat(), u64::from(i * 3).to_ne_bytes().to_vec()))
            .collect();
        for (k, v) in &wanted {
            map.update(k, v, MapFlags::ANY).unwrap();
        }
        let mut batched = batched(&map).unwrap().expect("this kernel has batch lookups");
        let mut one_by_one = key_by_key(&map).unwrap();
        batched.sort();
        one_by_one.sort();
        let mut wanted = wanted;
        wanted.sort();
        assert_eq!(batched, wanted);
        assert_eq!(one_by_one, wanted);
        let empty = MapHandle::create(MapType::Hash, Some("entries_empty"), 4, 4, 16, &opts).unwrap();
        assert_eq!(hash_entries(&empty).unwrap(), vec![]);
    }
}
