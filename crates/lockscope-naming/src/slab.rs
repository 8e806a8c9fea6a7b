//! A lock in a slab object, named: its offset inside the object (from the
//! slab's natural alignment and the cache's geometry, as the kernel's
//! `__kmem_obj_info()` computes it), the struct types the cache can hold
//! (dedicated caches by object size and name, `kmalloc-*` caches by size
//! class) narrowed to those holding a lock of the recorded kind at that
//! offset, and the member path to it.

use std::collections::HashMap;

use lockscope_trace::{Confidence, LockKind, SlabCache};

use crate::btf::{Btf, TypeId};
use crate::locks::lock_at;

const PAGE_SIZE: u64 = 4096;

/// kmalloc's size classes (bytes), smallest first.
const KMALLOC_CLASSES: [u32; 14] = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192, 16384];

/// Words of a cache, function or member name that say nothing of which
/// object it is (every lock is locked).
const NOISE: [&str; 24] = [
    "cache", "cachep", "struct", "kmalloc", "cg", "rcl", "rnd", "dma", "slab", "alloc", "lock", "locked", "unlock", "trylock", "spin",
    "raw", "irq", "irqsave", "bh", "mutex", "rwsem", "down", "up", "wait",
];

/// A lock named inside a slab object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlabName {
    /// Where the object holding the lock begins.
    pub base: u64,
    pub object: String,
    pub member: String,
    pub confidence: Confidence,
    /// Other objects that fit as well: (`struct`, `member`).
    pub alternatives: Vec<(String, String)>,
}

impl SlabName {
    /// Chooses the fit whose object is `object` (known to live at this
    /// lock's object base), if one is: named as one inferred from it.
    pub fn settle_on(&mut self, object: &str) -> bool {
        let Some(i) = self.alternatives.iter().position(|(o, _)| o == object) else { return false };
        let (o, m) = self.alternatives.remove(i);
        let previous = (std::mem::replace(&mut self.object, o), std::mem::replace(&mut self.member, m));
        self.alternatives.insert(0, previous);
        self.confidence = Confidence::Inferred;
        true
    }
}

/// Where a lock address lies inside its object: from where its slab
/// begins where the recorder read that, else for each slab order it could
/// have been allocated at (preferred, then the fallback), from the slab's
/// natural alignment. The offsets that fall inside an object.
pub fn offsets_in_object(lock_addr: u64, cache: &SlabCache, slab_start: Option<u64>) -> Vec<u32> {
    let in_slabs: Vec<u64> = match slab_start {
        Some(start) => lock_addr.checked_sub(start).into_iter().collect(),
        None => [cache.order, cache.min_order].iter().map(|&order| lock_addr & ((PAGE_SIZE << order.min(10)) - 1)).collect(),
    };
    let mut offsets = vec![];
    for within in in_slabs {
        let in_slot = (within % cache.slot_size.max(1) as u64) as u32;
        if let Some(offset) = in_slot.checked_sub(cache.red_left_pad).filter(|&o| o < cache.object_size) {
            if !offsets.contains(&offset) {
                offsets.push(offset);
            }
        }
    }
    offsets
}

fn is_kmalloc(cache: &str) -> bool {
    cache.contains("kmalloc")
}

/// Dedicated caches named otherwise than the struct they hold.
const CACHE_TYPES: [(&str, &str); 2] = [("filp", "file"), ("skbuff_head_cache", "sk_buff")];

/// The struct types a cache is named after (`task_struct`, `mm_struct`;
/// `signal_cache` holds `signal_struct`, `ext4_inode_cache` an
/// `ext4_inode_info`, `filp` a `file`).
fn types_named_by(cache: &str) -> Vec<String> {
    if let Some(&(_, ty)) = CACHE_TYPES.iter().find(|(c, _)| *c == cache) {
        return vec![ty.to_owned()];
    }
    let base = cache.trim_end_matches("_cachep").trim_end_matches("_cache").trim_end_matches("-cache");
    vec![base.to_owned(), format!("{base}_struct"), format!("{base}_info")]
}

/// The bytes a cache rounds its objects up to at most (SLAB_HWCACHE_ALIGN).
const CACHE_LINE: u32 = 64;

/// The struct types a cache may hold: for kmalloc, those of its size class;
/// else the types it is named after, whatever their size (`task_struct`'s
/// objects are cut to the FPU state this machine has), and the structs that
/// round up to its slot: caches of nearly one size are merged into one
/// (mm/slab_common.c), whose object size is then the largest of theirs.
fn candidate_types(btf: &Btf, cache: &SlabCache) -> Vec<TypeId> {
    let size = cache.object_size;
    if is_kmalloc(&cache.name) {
        let lower = KMALLOC_CLASSES.iter().copied().filter(|&c| c < size).max().unwrap_or(0);
        return btf.structs_sized(lower + 1..=size).collect();
    }
    let mut types: Vec<TypeId> = types_named_by(&cache.name).iter().flat_map(|name| btf.structs_named(name)).collect();
    let smallest = cache.slot_size.saturating_sub(CACHE_LINE - 1).min(size);
    let near: Vec<TypeId> = btf.structs_sized(smallest..=size).filter(|t| !types.contains(t)).collect();
    types.extend(near);
    types
}

fn words(name: &str) -> Vec<String> {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() > 1 && !w.chars().all(|c| c.is_ascii_digit()) && !NOISE.contains(w))
        .map(str::to_owned)
        .collect()
}

/// Words two names share.
fn shared_words(a: &[String], b: &str) -> usize {
    words(b).iter().filter(|w| a.contains(w)).count()
}

/// Names locks in slab objects, each place (cache, offsets, kind, call
/// site) once: a trace holds thousands of locks at the same place in objects
/// of one cache, and finding a place's types is the cost.
#[derive(Default)]
pub struct SlabNamer {
    named: HashMap<SlabPlace, Result<(u32, SlabName), String>>,
}

/// A cache's name, the offsets a lock may have in its objects, the lock's kind and its call site.
type SlabPlace = (String, Vec<u32>, LockKind, Option<String>);

impl SlabNamer {
    /// Names the lock at `lock_addr` in `cache` (whose slab begins at
    /// `slab_start`, where known), of kind `kind`, taken in `call_site` (a
    /// function name, which may narrow the candidates); Err says why it
    /// cannot be named.
    pub fn name(
        &mut self,
        btf: &Btf,
        lock_addr: u64,
        cache: &SlabCache,
        slab_start: Option<u64>,
        kind: LockKind,
        call_site: Option<&str>,
    ) -> Result<SlabName, String> {
        let offsets = offsets_in_object(lock_addr, cache, slab_start);
        let place = (cache.name.clone(), offsets, kind, call_site.map(str::to_owned));
        let named = match self.named.get(&place) {
            Some(named) => named.clone(),
            None => {
                let named = name_at(btf, cache, &place.1, kind, call_site);
                self.named.entry(place).or_insert(named).clone()
            }
        };
        let (offset, name) = named?;
        Ok(SlabName { base: lock_addr - offset as u64, ..name })
    }
}

/// The lock of `kind` at one of `offsets` in an object of `cache`: the
/// offset it was found at and its name (with base 0).
fn name_at(btf: &Btf, cache: &SlabCache, offsets: &[u32], kind: LockKind, call_site: Option<&str>) -> Result<(u32, SlabName), String> {
    if offsets.is_empty() {
        return Err(format!("its offset falls outside the objects of {}", cache.name));
    }
    // The preferred slab order's offset, unless nothing fits there.
    let types = candidate_types(btf, cache);
    let mut fits: Vec<(String, String)> = vec![];
    let mut found_at = 0;
    for &offset in offsets {
        found_at = offset;
        for &ty in &types {
            let Some(object) = btf.type_name(ty) else { continue };
            if let Some(member) = lock_at(btf, ty, offset, kind) {
                if !fits.iter().any(|(o, m)| o == object && *m == member) {
                    fits.push((object.to_owned(), member));
                }
            }
        }
        if !fits.is_empty() {
            break;
        }
    }
    if fits.is_empty() {
        return Err(format!(
            "no struct that {} holds has a {kind} at offset {}",
            cache.name,
            offsets.iter().map(u32::to_string).collect::<Vec<_>>().join(" or ")
        ));
    }
    // The cache named for its type (`task_struct`, `mm_struct`) says which.
    let named = types_named_by(&cache.name);
    let exact = fits.iter().position(|(o, _)| named.contains(o));
    // Else what the cache's name shares with the type's, then what the call
    // site's shares with the type's and the member's (`locked_inode_to_wb_and_lock_list`
    // takes `backing_dev_info.wb.list_lock`).
    let cache_words = words(&cache.name);
    let site_words = call_site.map(words).unwrap_or_default();
    let score = |(o, m): &(String, String)| (shared_words(&cache_words, o), shared_words(&site_words, &format!("{o}.{m}")));
    let confidence;
    let chosen = match exact {
        Some(i) => {
            confidence = Confidence::Exact;
            i
        }
        // The one fit, where a kmalloc cache may hold any type, or where it
        // shares a word with the cache or the call site: else it may be
        // the only fit only because the cache's own type is not in the BTF
        // read (a module's not loaded), a guess.
        None if fits.len() == 1 => {
            confidence = match is_kmalloc(&cache.name) || score(&fits[0]) != (0, 0) {
                true => Confidence::Inferred,
                false => Confidence::Ambiguous,
            };
            0
        }
        None => {
            let best = (0..fits.len()).max_by_key(|&i| (score(&fits[i]), std::cmp::Reverse(fits[i].clone()))).expect("fits");
            let unique = fits.iter().filter(|f| score(f) == score(&fits[best])).count() == 1;
            confidence = match unique && score(&fits[best]) != (0, 0) {
                true => Confidence::Inferred,
                false => Confidence::Ambiguous,
            };
            best
        }
    };
    let (object, member) = fits.remove(chosen);
    Ok((found_at, SlabName { base: 0, object, member, confidence, alternatives: fits }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(name: &str, slot_size: u32, object_size: u32, order: u32) -> SlabCache {
        SlabCache { name: name.into(), slot_size, object_size, red_left_pad: 0, order, min_order: 0 }
    }

    #[test]
    fn offsets_come_from_the_slab_alignment_and_the_slot() {
        // bdev_cache on this kind of machine: 1536-byte slots, order-3 slabs.
        let bdev = cache("bdev_cache", 1536, 1520, 3);
        let base = 0xffff_8881_004a_8000;
        // The preferred order's offset first, then the fallback order's.
        assert_eq!(offsets_in_object(base + 7 * 1536 + 1404, &bdev, None), [1404, 892]);
        assert_eq!(offsets_in_object(base + 7 * 1536 + 1404, &SlabCache { min_order: 3, ..bdev.clone() }, None), [1404]);
        // Past the object, in the slot's padding: no offset.
        assert!(offsets_in_object(base + 1530, &cache("bdev_cache", 1536, 1520, 0), None).is_empty());
        // A red zone before each object shifts it.
        let debug = SlabCache { red_left_pad: 64, ..cache("x", 256, 128, 0) };
        assert_eq!(offsets_in_object(0xffff_8881_0000_0000 + 256 + 64 + 8, &debug, None), [8]);
        // Where the slab's start was read from its page, that alone: even a
        // slab of the fallback order, and one not aligned as its order says.
        assert_eq!(offsets_in_object(base + 7 * 1536 + 1404, &bdev, Some(base)), [1404]);
        assert_eq!(offsets_in_object(base + 0x1000 + 1404, &bdev, Some(base + 0x1000)), [1404]);
        assert!(offsets_in_object(base, &bdev, Some(base + 0x1000)).is_empty(), "before its slab");
    }

    #[test]
    fn names_are_split_into_words_that_say_something() {
        assert_eq!(words("ext4_inode_cache"), ["ext4", "inode"]);
        assert_eq!(words("kmalloc-cg-1k"), ["1k"]);
        assert_eq!(words("__ext4_new_inode"), ["ext4", "new", "inode"]);
        assert_eq!(words("locked_inode_to_wb_and_lock_list"), ["inode", "to", "wb", "and", "list"]);
        assert_eq!(words("backing_dev_info.wb.list_lock"), ["backing", "dev", "info", "wb", "list"]);
    }

    #[test]
    fn an_object_known_from_another_lock_settles_an_ambiguous_name() {
        let mut name = SlabName {
            base: 0xffff_8881_0000_0000,
            object: "irq_domain".into(),
            member: "mutex.wait_lock".into(),
            confidence: Confidence::Ambiguous,
            alternatives: vec![("pipe_inode_info".into(), "rd_wait.lock".into())],
        };
        assert!(!name.settle_on("task_struct"), "not among the fits: nothing changes");
        assert!(name.settle_on("pipe_inode_info"));
        assert_eq!(
            (name.object.as_str(), name.member.as_str(), name.confidence),
            ("pipe_inode_info", "rd_wait.lock", Confidence::Inferred)
        );
        assert_eq!(name.alternatives, [("irq_domain".to_owned(), "mutex.wait_lock".to_owned())]);
    }
}
