//! A tiny WebAssembly assembler for test modules (no `wat` dependency): types, function
//! imports, functions without locals, one memory with a data segment, exports.

pub(crate) const I32: u8 = 0x7f;

/// Instruction bytes used by the test modules.
pub(crate) mod op {
    pub(crate) const UNREACHABLE: u8 = 0x00;
    pub(crate) const LOOP_EMPTY: [u8; 2] = [0x03, 0x40];
    pub(crate) const END: u8 = 0x0b;
    pub(crate) const BR: u8 = 0x0c;
    pub(crate) const BR_IF: u8 = 0x0d;
    pub(crate) const CALL: u8 = 0x10;
    pub(crate) const DROP: u8 = 0x1a;
    pub(crate) const LOCAL_GET: u8 = 0x20;
    pub(crate) const I32_LOAD: [u8; 3] = [0x28, 0x02, 0x00];
    pub(crate) const I32_STORE: [u8; 3] = [0x36, 0x02, 0x00];
    pub(crate) const MEMORY_GROW: [u8; 2] = [0x40, 0x00];
    pub(crate) const I32_CONST: u8 = 0x41;
    pub(crate) const I32_NE: u8 = 0x47;
    pub(crate) const I32_ADD: u8 = 0x6a;
    pub(crate) const I32_SUB: u8 = 0x6b;
}

#[derive(Default)]
pub(crate) struct Asm {
    types: Vec<(Vec<u8>, Vec<u8>)>,
    imports: Vec<(String, String, u32)>,
    functions: Vec<(u32, Vec<u8>)>,
    exports: Vec<(String, u8, u32)>,
    memory_pages: Option<u32>,
    data: Vec<(u32, Vec<u8>)>,
}

impl Asm {
    fn ty(&mut self, params: &[u8], results: &[u8]) -> u32 {
        let ty = (params.to_vec(), results.to_vec());
        let index = self.types.iter().position(|t| *t == ty).unwrap_or_else(|| {
            self.types.push(ty);
            self.types.len() - 1
        });
        u32::try_from(index).unwrap_or(u32::MAX)
    }

    /// Imports a function; call before adding functions. Returns its function index.
    pub(crate) fn import(
        &mut self,
        module: &str,
        name: &str,
        params: &[u8],
        results: &[u8],
    ) -> u32 {
        assert!(self.functions.is_empty(), "imports come first");
        let ty = self.ty(params, results);
        self.imports.push((module.into(), name.into(), ty));
        u32::try_from(self.imports.len() - 1).unwrap_or(u32::MAX)
    }

    /// Defines a function (no locals; `code` without the final `end`) and exports it.
    pub(crate) fn export_func(
        &mut self,
        name: &str,
        params: &[u8],
        results: &[u8],
        code: &[u8],
    ) -> u32 {
        let ty = self.ty(params, results);
        let mut body = code.to_vec();
        body.push(op::END);
        self.functions.push((ty, body));
        let index =
            u32::try_from(self.imports.len() + self.functions.len() - 1).unwrap_or(u32::MAX);
        self.exports.push((name.into(), 0x00, index));
        index
    }

    /// Defines and exports `memory` with `pages` pages.
    pub(crate) fn memory(&mut self, pages: u32) -> &mut Self {
        self.memory_pages = Some(pages);
        self.exports.push(("memory".into(), 0x02, 0));
        self
    }

    /// Initializes memory at `offset` with `bytes`.
    pub(crate) fn data(&mut self, offset: u32, bytes: &[u8]) -> &mut Self {
        self.data.push((offset, bytes.to_vec()));
        self
    }

    pub(crate) fn finish(&self) -> Vec<u8> {
        let mut out = b"\0asm\x01\0\0\0".to_vec();
        section(&mut out, 1, &self.types, |s, (params, results)| {
            s.push(0x60);
            vec_bytes(s, params);
            vec_bytes(s, results);
        });
        section(&mut out, 2, &self.imports, |s, (module, name, ty)| {
            name_bytes(s, module);
            name_bytes(s, name);
            s.push(0x00);
            leb(s, *ty);
        });
        section(&mut out, 3, &self.functions, |s, (ty, _)| leb(s, *ty));
        if let Some(pages) = self.memory_pages {
            section(&mut out, 5, &[pages], |s, pages| {
                s.push(0x00);
                leb(s, *pages);
            });
        }
        section(&mut out, 7, &self.exports, |s, (name, kind, index)| {
            name_bytes(s, name);
            s.push(*kind);
            leb(s, *index);
        });
        section(&mut out, 10, &self.functions, |s, (_, body)| {
            leb(s, len(body.len() + 1));
            s.push(0x00); // no locals
            s.extend_from_slice(body);
        });
        section(&mut out, 11, &self.data, |s, (offset, bytes)| {
            s.push(0x00);
            s.push(op::I32_CONST);
            sleb(s, i64::from(*offset));
            s.push(op::END);
            vec_bytes(s, bytes);
        });
        out
    }
}

fn len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn section<T>(out: &mut Vec<u8>, id: u8, items: &[T], mut encode: impl FnMut(&mut Vec<u8>, &T)) {
    if items.is_empty() {
        return;
    }
    let mut body = Vec::new();
    leb(&mut body, len(items.len()));
    for item in items {
        encode(&mut body, item);
    }
    out.push(id);
    leb(out, len(body.len()));
    out.extend_from_slice(&body);
}

fn vec_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    leb(out, len(bytes.len()));
    out.extend_from_slice(bytes);
}

fn name_bytes(out: &mut Vec<u8>, name: &str) {
    vec_bytes(out, name.as_bytes());
}

pub(crate) fn leb(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

pub(crate) fn sleb(out: &mut Vec<u8>, mut value: i64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
        out.push(if done { byte } else { byte | 0x80 });
        if done {
            return;
        }
    }
}

/// `i32.const value` as bytes.
pub(crate) fn i32_const(value: i32) -> Vec<u8> {
    let mut out = vec![op::I32_CONST];
    sleb(&mut out, i64::from(value));
    out
}

/// A minimal Proxy-Wasm 0.2.1 module: memory, a bump allocator (`proxy_on_memory_allocate`,
/// heap from 1024), no-op context creation, configure returning `configure_ok`, and the
/// given request/response header callbacks (bodies; they receive 3 i32 and return one).
pub(crate) fn proxy_module(
    configure_ok: bool,
    request_headers: &[u8],
    response_headers: &[u8],
) -> Vec<u8> {
    let mut asm = proxy_base(&[], &i32_const(i32::from(configure_ok)));
    asm.export_func(
        "proxy_on_request_headers",
        &[I32, I32, I32],
        &[I32],
        request_headers,
    );
    asm.export_func(
        "proxy_on_response_headers",
        &[I32, I32, I32],
        &[I32],
        response_headers,
    );
    asm.finish()
}

/// An `env` function a module imports: name, params, results.
pub(crate) type EnvImport<'a> = (&'a str, &'a [u8], &'a [u8]);

/// The start of [`proxy_module`], for modules that export other callbacks: the `env`
/// functions of `imports` (function indices 0, 1, … in order), memory, the allocator,
/// context creation and `proxy_on_configure` running `configure` (which returns an i32).
pub(crate) fn proxy_base(imports: &[EnvImport<'_>], configure: &[u8]) -> Asm {
    let mut asm = Asm::default();
    for (name, params, results) in imports {
        asm.import("env", name, params, results);
    }
    asm.memory(2).data(0, &1024u32.to_le_bytes());
    asm.export_func("proxy_abi_version_0_2_1", &[], &[], &[]);
    let mut allocate = i32_const(0);
    allocate.extend(i32_const(0));
    allocate.extend(op::I32_LOAD);
    allocate.extend([op::LOCAL_GET, 0, op::I32_ADD]);
    allocate.extend(op::I32_STORE);
    allocate.extend(i32_const(0));
    allocate.extend(op::I32_LOAD);
    allocate.extend([op::LOCAL_GET, 0, op::I32_SUB]);
    asm.export_func("proxy_on_memory_allocate", &[I32], &[I32], &allocate);
    asm.export_func("proxy_on_context_create", &[I32, I32], &[], &[]);
    asm.export_func("proxy_on_configure", &[I32, I32], &[I32], configure);
    asm
}

/// `return 0` (Continue).
pub(crate) fn continue_() -> Vec<u8> {
    i32_const(0)
}

/// Traps with `unreachable`.
pub(crate) fn trap() -> Vec<u8> {
    vec![op::UNREACHABLE]
}

/// Spins forever.
pub(crate) fn spin() -> Vec<u8> {
    let mut code = op::LOOP_EMPTY.to_vec();
    code.extend([op::BR, 0, op::END, op::UNREACHABLE]);
    code
}

/// Grows memory one page at a time until refused, then traps (as an allocator aborts).
pub(crate) fn exhaust_memory() -> Vec<u8> {
    let mut code = op::LOOP_EMPTY.to_vec();
    code.extend(i32_const(1));
    code.extend(op::MEMORY_GROW);
    code.extend(i32_const(-1));
    code.extend([op::I32_NE, op::BR_IF, 0, op::END, op::UNREACHABLE]);
    code
}

#[test]
fn leb_encodings() {
    let mut out = Vec::new();
    leb(&mut out, 624_485);
    assert_eq!(out, [0xe5, 0x8e, 0x26]);
    out.clear();
    sleb(&mut out, -1);
    assert_eq!(out, [0x7f]);
    out.clear();
    sleb(&mut out, 64);
    assert_eq!(out, [0xc0, 0x00]);
}
