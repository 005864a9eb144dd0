//! Guest memory access for host functions: bounds-checked slices, little-endian words, and
//! returning a value to the guest in memory it allocates (`proxy_on_memory_allocate`).
//!
//! Values on their way out are first written into the VM's reusable `scratch` buffer,
//! then copied into the guest allocation: the allocator runs guest code, so nothing may
//! stay borrowed from the Store across it.

use wasmtime::{Caller, Memory};

use super::{AbiViolation, Status};
use crate::wasm::host::HostState;

/// The guest's linear memory (every accepted module exports one).
pub(crate) fn memory(caller: &Caller<'_, HostState>) -> Result<Memory, Status> {
    caller.data().memory.ok_or(Status::InvalidMemoryAccess)
}

/// `len` bytes at `ptr`, or `InvalidMemoryAccess`.
pub(crate) fn slice(mem: &[u8], ptr: u32, len: u32) -> Result<&[u8], Status> {
    let start = ptr as usize;
    start
        .checked_add(len as usize)
        .and_then(|end| mem.get(start..end))
        .ok_or(Status::InvalidMemoryAccess)
}

/// `len` writable bytes at `ptr`, or `InvalidMemoryAccess`.
pub(crate) fn slice_mut(mem: &mut [u8], ptr: u32, len: usize) -> Result<&mut [u8], Status> {
    let start = ptr as usize;
    start
        .checked_add(len)
        .and_then(|end| mem.get_mut(start..end))
        .ok_or(Status::InvalidMemoryAccess)
}

/// Writes a little-endian `u32` (a wasm32 pointer or size) at `ptr`.
pub(crate) fn write_u32(mem: &mut [u8], ptr: u32, value: u32) -> Result<(), Status> {
    slice_mut(mem, ptr, 4)?.copy_from_slice(&value.to_le_bytes());
    Ok(())
}

/// Writes a little-endian `u64` at `ptr`.
pub(crate) fn write_u64(mem: &mut [u8], ptr: u32, value: u64) -> Result<(), Status> {
    slice_mut(mem, ptr, 8)?.copy_from_slice(&value.to_le_bytes());
    Ok(())
}

/// Reads a little-endian `u32` at `ptr`.
pub(crate) fn read_u32(mem: &[u8], ptr: u32) -> Result<u32, Status> {
    let bytes = slice(mem, ptr, 4)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(bytes);
    Ok(u32::from_le_bytes(word))
}

/// Calls the guest's allocator for `len` bytes. `Ok(0)` means it failed.
fn allocate(caller: &mut Caller<'_, HostState>, len: usize) -> wasmtime::Result<u32> {
    let Ok(len) = u32::try_from(len) else {
        return Ok(0);
    };
    let Some(allocator) = caller.data().allocator.clone() else {
        return Ok(0);
    };
    if caller.data().call.in_allocator {
        return Err(AbiViolation(
            "the guest's allocator called back into the host while allocating".into(),
        )
        .into());
    }
    caller.data_mut().call.in_allocator = true;
    let result = allocator.call(&mut *caller, len);
    caller.data_mut().call.in_allocator = false;
    result
}

/// Hands the VM's `scratch` buffer to the guest: allocates it in guest memory, copies it,
/// and writes the pointer and size at `ptr_ptr` and `size_ptr`. An empty value is
/// returned as a null pointer and zero size without allocating (as Envoy does).
pub(crate) fn return_scratch(
    caller: &mut Caller<'_, HostState>,
    ptr_ptr: u32,
    size_ptr: u32,
) -> wasmtime::Result<Result<(), Status>> {
    let len = caller.data().scratch.len();
    let address = if len == 0 {
        0
    } else {
        match allocate(caller, len)? {
            0 => return Ok(Err(Status::InvalidMemoryAccess)),
            address => address,
        }
    };
    let mem = match memory(caller) {
        Ok(mem) => mem,
        Err(status) => return Ok(Err(status)),
    };
    let (data, host) = mem.data_and_store_mut(&mut *caller);
    Ok(copy_out(data, &host.scratch, address, ptr_ptr, size_ptr))
}

fn copy_out(
    data: &mut [u8],
    value: &[u8],
    address: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> Result<(), Status> {
    if !value.is_empty() {
        slice_mut(data, address, value.len())?.copy_from_slice(value);
    }
    let size = u32::try_from(value.len()).map_err(|_| Status::InvalidMemoryAccess)?;
    write_u32(data, ptr_ptr, address)?;
    write_u32(data, size_ptr, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_without_overflow() {
        let mut mem = vec![0u8; 16];
        assert_eq!(slice(&mem, 12, 4).map(<[u8]>::len), Ok(4));
        assert_eq!(slice(&mem, 13, 4), Err(Status::InvalidMemoryAccess));
        assert_eq!(slice(&mem, u32::MAX, 2), Err(Status::InvalidMemoryAccess));
        assert_eq!(slice(&mem, 16, 0).map(<[u8]>::len), Ok(0));
        assert_eq!(write_u32(&mut mem, 13, 1), Err(Status::InvalidMemoryAccess));
        assert_eq!(write_u32(&mut mem, 0, 0xdead_beef), Ok(()));
        assert_eq!(read_u32(&mem, 0), Ok(0xdead_beef));
        assert_eq!(write_u64(&mut mem, 8, u64::MAX), Ok(()));
        assert_eq!(&mem[8..], &[0xff; 8]);
    }

    #[test]
    fn copy_out_writes_pointer_and_size() {
        let mut mem = vec![0u8; 32];
        assert_eq!(copy_out(&mut mem, b"abc", 16, 0, 4), Ok(()));
        assert_eq!(&mem[16..19], b"abc");
        assert_eq!(read_u32(&mem, 0), Ok(16));
        assert_eq!(read_u32(&mem, 4), Ok(3));
        assert_eq!(
            copy_out(&mut mem, b"abc", 30, 0, 4),
            Err(Status::InvalidMemoryAccess)
        );
    }
}
