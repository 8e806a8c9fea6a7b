//! The kernel's BPF Type Format, as much of it as naming needs: struct and
//! union layouts (members, their offsets and types, through typedefs,
//! qualifiers, anonymous members and arrays), read from the raw format
//! (Documentation/bpf/btf.rst) with no library.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::OnceLock;

const MAGIC: u16 = 0xeb9f;

/// Where the running kernel's BTF is.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("not BTF: {0}")]
    Format(String),
}

/// A type id; 0 is void.
pub type TypeId = u32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Empty for an anonymous struct or union.
    pub name: String,
    pub ty: TypeId,
    /// From the start of the enclosing type, in bits.
    pub bit_offset: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Type {
    Void,
    Int {
        name: String,
        size: u32,
    },
    Pointer,
    Array {
        elem: TypeId,
        len: u32,
    },
    Struct {
        name: String,
        size: u32,
        members: Vec<Member>,
    },
    Union {
        name: String,
        size: u32,
        members: Vec<Member>,
    },
    Enum {
        name: String,
        size: u32,
        /// Its enumerators' names.
        values: Vec<String>,
    },
    Forward {
        name: String,
    },
    Typedef {
        name: String,
        ty: TypeId,
    },
    /// const, volatile, restrict, type tags: the type they qualify.
    Qualified(TypeId),
    /// A function (kernel functions and kfuncs).
    Func {
        name: String,
    },
    /// A variable (per-CPU variables, in this kernel's BTF).
    Var {
        name: String,
        ty: TypeId,
    },
    /// A section of variables: (variable, offset, size) each.
    Datasec {
        name: String,
        vars: Vec<(TypeId, u32, u32)>,
    },
    /// Functions, variables, sections, declaration tags, floats: not layouts.
    Other,
}

/// A parsed BTF blob.
pub struct Btf {
    types: Vec<Type>,
    by_name: HashMap<String, Vec<TypeId>>,
    /// Named structs by size: what a slab cache of a size can hold.
    structs_by_size: BTreeMap<u32, Vec<TypeId>>,
    /// vmlinux's ids and strings, which module BTF continues.
    base: Option<Base>,
    /// The typedefs of each type (`journal_t` of `struct journal_s`), built when first asked.
    typedefs: OnceLock<HashMap<TypeId, Vec<String>>>,
}

struct Base {
    types: u32,
    strings: Vec<u8>,
}

/// A BTF blob's type and string sections.
struct Blob<'a> {
    types: &'a [u8],
    strings: &'a [u8],
}

impl<'a> Blob<'a> {
    fn of(bytes: &'a [u8]) -> Result<Self, BtfError> {
        let word = |at: usize| -> Result<u32, BtfError> {
            let b = bytes.get(at..at + 4).ok_or_else(|| BtfError::Format("header cut short".into()))?;
            Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        if bytes.len() < 24 || u16::from_le_bytes([bytes[0], bytes[1]]) != MAGIC {
            return Err(BtfError::Format("no BTF magic (or a big-endian blob)".into()));
        }
        let hdr_len = word(4)? as usize;
        let (type_off, type_len, str_off, str_len) = (word(8)? as usize, word(12)? as usize, word(16)? as usize, word(20)? as usize);
        let section = |off: usize, len: usize| {
            bytes.get(hdr_len + off..hdr_len + off + len).ok_or_else(|| BtfError::Format("a section lies outside the blob".into()))
        };
        Ok(Blob { types: section(type_off, type_len)?, strings: section(str_off, str_len)? })
    }
}

/// The string at `off` of a string section.
fn string_at(strings: &[u8], off: u32) -> String {
    let rest = strings.get(off as usize..).unwrap_or_default();
    String::from_utf8_lossy(&rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]).into_owned()
}

/// The types of a type section, their names looked up with `name` and the
/// ids they refer to mapped with `id`.
fn parse_types(type_bytes: &[u8], name: impl Fn(u32) -> String, id: impl Fn(u32) -> TypeId) -> Result<Vec<Type>, BtfError> {
    let mut types = vec![];
    let mut r = Reader { bytes: type_bytes, at: 0 };
    while r.at < type_bytes.len() {
        let (name_off, info, size_or_type) = (r.u32()?, r.u32()?, r.u32()?);
        let (kind, vlen, kind_flag) = ((info >> 24) & 0x1f, (info & 0xffff) as usize, info >> 31 == 1);
        let ty = match kind {
            1 => {
                r.skip(1)?;
                Type::Int { name: name(name_off), size: size_or_type }
            }
            2 => Type::Pointer,
            3 => {
                let (elem, _index, len) = (r.u32()?, r.u32()?, r.u32()?);
                Type::Array { elem: id(elem), len }
            }
            4 | 5 => {
                let mut members = Vec::with_capacity(vlen);
                for _ in 0..vlen {
                    let (m_name, m_type, m_offset) = (r.u32()?, r.u32()?, r.u32()?);
                    // With kind_flag, the high byte is a bitfield's width.
                    let bit_offset = if kind_flag { m_offset & 0xff_ffff } else { m_offset };
                    members.push(Member { name: name(m_name), ty: id(m_type), bit_offset });
                }
                let (name, size) = (name(name_off), size_or_type);
                if kind == 4 {
                    Type::Struct { name, size, members }
                } else {
                    Type::Union { name, size, members }
                }
            }
            6 | 19 => {
                // (name, value), or (name, low, high) for 64-bit enums.
                let mut values = Vec::with_capacity(vlen);
                for _ in 0..vlen {
                    values.push(name(r.u32()?));
                    r.skip(if kind == 6 { 1 } else { 2 })?;
                }
                Type::Enum { name: name(name_off), size: size_or_type, values }
            }
            7 => Type::Forward { name: name(name_off) },
            8 => Type::Typedef { name: name(name_off), ty: id(size_or_type) },
            9 | 10 | 11 | 18 => Type::Qualified(id(size_or_type)),
            12 => Type::Func { name: name(name_off) },
            16 => Type::Other,
            13 => {
                r.skip(2 * vlen)?;
                Type::Other
            }
            14 => {
                r.skip(1)?;
                Type::Var { name: name(name_off), ty: id(size_or_type) }
            }
            15 => {
                let mut vars = Vec::with_capacity(vlen);
                for _ in 0..vlen {
                    vars.push((id(r.u32()?), r.u32()?, r.u32()?));
                }
                Type::Datasec { name: name(name_off), vars }
            }
            17 => {
                r.skip(1)?;
                Type::Other
            }
            other => return Err(BtfError::Format(format!("unknown type kind {other}"))),
        };
        types.push(ty);
    }
    Ok(types)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32, BtfError> {
        let b = self.bytes.get(self.at..self.at + 4).ok_or_else(|| BtfError::Format("type section cut short".into()))?;
        self.at += 4;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn skip(&mut self, words: usize) -> Result<(), BtfError> {
        for _ in 0..words {
            self.u32()?;
        }
        Ok(())
    }
}

impl Btf {
    /// The running kernel's BTF.
    pub fn vmlinux() -> Result<Btf, BtfError> {
        Btf::from_file(Path::new(VMLINUX))
    }

    pub fn from_file(path: &Path) -> Result<Btf, BtfError> {
        let bytes = std::fs::read(path).map_err(|source| BtfError::Read { path: path.display().to_string(), source })?;
        Btf::from_bytes(&bytes)
    }

    /// Parses a little-endian BTF blob (what x86-64 kernels expose).
    pub fn from_bytes(bytes: &[u8]) -> Result<Btf, BtfError> {
        let blob = Blob::of(bytes)?;
        let mut types = vec![Type::Void];
        types.extend(parse_types(blob.types, |off| string_at(blob.strings, off), |id| id)?);
        let mut btf =
            Btf { types: vec![], by_name: HashMap::new(), structs_by_size: BTreeMap::new(), base: None, typedefs: OnceLock::new() };
        btf.append(types);
        btf.base = Some(Base { types: btf.types.len() as u32, strings: blob.strings.to_vec() });
        Ok(btf)
    }

    /// The running kernel's BTF with that of every loaded module
    /// (`/sys/kernel/btf/ext4`: ext4's structs are there, not in vmlinux).
    pub fn kernel() -> Result<Btf, BtfError> {
        let mut btf = Btf::vmlinux()?;
        let dir = Path::new(VMLINUX).parent().expect("a directory");
        let mut modules: Vec<_> = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
        modules.sort();
        for module in modules.iter().filter(|p| p.as_os_str() != VMLINUX) {
            // A module that cannot be read only leaves its types out.
            if let Ok(bytes) = std::fs::read(module) {
                let _ = btf.add_module(&bytes);
            }
        }
        Ok(btf)
    }

    /// Adds a module's split BTF, whose ids and strings continue vmlinux's.
    pub fn add_module(&mut self, bytes: &[u8]) -> Result<(), BtfError> {
        let base = self.base.as_ref().ok_or_else(|| BtfError::Format("module BTF needs vmlinux's first".into()))?;
        let blob = Blob::of(bytes)?;
        let (base_types, base_strings) = (base.types, base.strings.len() as u32);
        let first = self.types.len() as u32;
        let name = |off: u32| match off.checked_sub(base_strings) {
            Some(own) => string_at(blob.strings, own),
            None => string_at(&base.strings, off),
        };
        // Its own types follow the ones already added.
        let id = |id: u32| if id < base_types { id } else { id - base_types + first };
        let types = parse_types(blob.types, name, id)?;
        self.append(types);
        Ok(())
    }

    /// The names `id` has as a typedef's target (through typedefs of typedefs).
    pub fn typedefs_of(&self, id: TypeId) -> &[String] {
        let all = self.typedefs.get_or_init(|| {
            let mut by_target: HashMap<TypeId, Vec<String>> = HashMap::new();
            for (i, ty) in self.types.iter().enumerate() {
                if let Type::Typedef { name, .. } = ty {
                    by_target.entry(self.resolve(i as TypeId)).or_default().push(name.clone());
                }
            }
            by_target
        });
        all.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Adds types (their ids continuing this table's) and indexes them.
    fn append(&mut self, types: Vec<Type>) {
        for ty in types {
            let id = self.types.len() as TypeId;
            if let Some(name) = ty.name().filter(|n| !n.is_empty()) {
                self.by_name.entry(name.to_owned()).or_default().push(id);
                if let Type::Struct { size, .. } = ty {
                    self.structs_by_size.entry(size).or_default().push(id);
                }
            }
            self.types.push(ty);
        }
    }

    pub fn get(&self, id: TypeId) -> &Type {
        self.types.get(id as usize).unwrap_or(&Type::Void)
    }

    /// The type `id` names once typedefs and qualifiers are seen through.
    pub fn resolve(&self, mut id: TypeId) -> TypeId {
        for _ in 0..32 {
            match self.get(id) {
                Type::Typedef { ty, .. } | Type::Qualified(ty) => id = *ty,
                _ => break,
            }
        }
        id
    }

    /// Bytes a value of the type takes.
    pub fn size_of(&self, id: TypeId) -> u32 {
        match self.get(self.resolve(id)) {
            Type::Int { size, .. } | Type::Enum { size, .. } | Type::Struct { size, .. } | Type::Union { size, .. } => *size,
            Type::Pointer => 8,
            Type::Array { elem, len } => self.size_of(*elem).saturating_mul(*len),
            _ => 0,
        }
    }

    /// Every struct (not union) named `name`: a kernel type, or a typedef of one.
    pub fn structs_named(&self, name: &str) -> Vec<TypeId> {
        self.by_name.get(name).into_iter().flatten().map(|&id| self.resolve(id)).filter(|&id| self.is_struct(id)).collect()
    }

    /// The per-CPU variables (section `.data..percpu`): name, type, offset in
    /// a CPU's per-CPU area, size; and the section's size.
    pub fn percpu_variables(&self) -> (Vec<(&str, TypeId, u32, u32)>, u32) {
        let Some((vars, size)) = self.types.iter().find_map(|t| match t {
            Type::Datasec { name, vars } if name == ".data..percpu" => {
                Some((vars, vars.iter().map(|&(_, off, size)| off + size).max().unwrap_or(0)))
            }
            _ => None,
        }) else {
            return (vec![], 0);
        };
        let named = vars
            .iter()
            .filter_map(|&(var, offset, size)| match self.get(var) {
                Type::Var { name, ty } => Some((name.as_str(), *ty, offset, size)),
                _ => None,
            })
            .collect();
        (named, size)
    }

    /// The type of the variable `name`, where BTF lists it (per-CPU
    /// variables always; other globals only on kernels built to list them).
    pub fn variable(&self, name: &str) -> Option<TypeId> {
        self.by_name.get(name).into_iter().flatten().find_map(|&id| match self.get(id) {
            Type::Var { ty, .. } => Some(*ty),
            _ => None,
        })
    }

    /// Whether the enum `name` has the enumerator `value` (`pageflags`, `PG_slab`).
    pub fn has_enumerator(&self, name: &str, value: &str) -> bool {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .any(|&id| matches!(self.get(id), Type::Enum { values, .. } if values.iter().any(|v| v == value)))
    }

    /// Whether the kernel has a function (or kfunc) of this name.
    pub fn has_function(&self, name: &str) -> bool {
        self.by_name.get(name).into_iter().flatten().any(|&id| matches!(self.get(id), Type::Func { .. }))
    }

    /// Named structs whose size is in `sizes`, smallest first.
    pub fn structs_sized(&self, sizes: std::ops::RangeInclusive<u32>) -> impl Iterator<Item = TypeId> + '_ {
        self.structs_by_size.range(sizes).flat_map(|(_, ids)| ids.iter().copied())
    }

    fn is_struct(&self, id: TypeId) -> bool {
        matches!(self.get(id), Type::Struct { .. })
    }

    /// The name a type is known by: a struct's or typedef's own (`rwlock_t`
    /// names an anonymous struct), else none.
    pub fn type_name(&self, id: TypeId) -> Option<&str> {
        self.get(id).name().filter(|n| !n.is_empty())
    }

    /// The byte offset of a member path (`vfs_inode.i_data.i_private_lock`,
    /// `node_zones[1].lock`) in type `id`, looking through anonymous members.
    pub fn offset_of(&self, id: TypeId, path: &str) -> Option<u32> {
        self.walk(id, path).map(|(_, offset)| offset)
    }

    /// The type a member path of type `id` leads to, as declared.
    pub fn type_at(&self, id: TypeId, path: &str) -> Option<TypeId> {
        self.walk(id, path).map(|(ty, _)| ty)
    }

    fn walk(&self, id: TypeId, path: &str) -> Option<(TypeId, u32)> {
        let (mut ty, mut offset) = (id, 0);
        for part in path.split('.') {
            let (name, indexes) = part.split_once('[').map_or((part, ""), |(n, rest)| (n, rest));
            let (member_ty, member_offset) = self.member_named(ty, name)?;
            (ty, offset) = (member_ty, offset + member_offset);
            for index in indexes.split('[').filter(|i| !i.is_empty()) {
                let index: u32 = index.trim_end_matches(']').parse().ok()?;
                let Type::Array { elem, len } = self.get(self.resolve(ty)) else { return None };
                if index >= *len {
                    return None;
                }
                (ty, offset) = (*elem, offset + index * self.size_of(*elem));
            }
        }
        Some((ty, offset))
    }

    /// A named member of a struct or union, also inside anonymous members:
    /// its type and byte offset.
    fn member_named(&self, id: TypeId, name: &str) -> Option<(TypeId, u32)> {
        let (Type::Struct { members, .. } | Type::Union { members, .. }) = self.get(self.resolve(id)) else { return None };
        members.iter().find_map(|m| match m.name.as_str() {
            n if n == name => Some((m.ty, m.bit_offset / 8)),
            "" => self.member_named(m.ty, name).map(|(ty, off)| (ty, off + m.bit_offset / 8)),
            _ => None,
        })
    }

    /// The members of type `id` (a struct, union or array, through
    /// typedefs) that cover byte `offset`: each as (its path component, its
    /// type as written, the offset left inside it). Array elements are `[i]`
    /// components; anonymous members have an empty one. Union members
    /// overlap, so there may be several.
    pub fn members_covering(&self, id: TypeId, offset: u32) -> Vec<(String, TypeId, u32)> {
        let bits = offset as u64 * 8;
        match self.get(self.resolve(id)) {
            Type::Struct { members, .. } | Type::Union { members, .. } => members
                .iter()
                .filter(|m| m.bit_offset % 8 == 0)
                .filter(|m| {
                    let (start, size) = (m.bit_offset as u64, self.size_of(m.ty) as u64 * 8);
                    start <= bits && bits < start + size
                })
                .map(|m| (m.name.clone(), m.ty, offset - m.bit_offset / 8))
                .collect(),
            Type::Array { elem, len } => {
                let size = self.size_of(*elem);
                match size > 0 && offset / size < *len {
                    true => vec![(format!("[{}]", offset / size), *elem, offset % size)],
                    false => vec![],
                }
            }
            _ => vec![],
        }
    }
}

impl Type {
    fn name(&self) -> Option<&str> {
        match self {
            Type::Int { name, .. }
            | Type::Struct { name, .. }
            | Type::Union { name, .. }
            | Type::Enum { name, .. }
            | Type::Forward { name }
            | Type::Typedef { name, .. }
            | Type::Var { name, .. }
            | Type::Func { name } => Some(name),
            _ => None,
        }
    }
}
