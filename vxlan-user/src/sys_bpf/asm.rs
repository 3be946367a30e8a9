//! A small encoder of BPF instructions (`struct bpf_insn`), for the few
//! programs that are assembled by hand instead of compiled: the bench's
//! bounds and floors and the tests' helpers. Only what they use.

/// One instruction, as the kernel reads it: opcode, `dst | src << 4`,
/// offset (little-endian i16), immediate (little-endian i32).
pub type Insn = [u8; 8];

/// Registers: `R0` return value, `R1`–`R5` arguments, `R6`–`R9` kept
/// across calls, `R10` the frame pointer.
pub const R0: u8 = 0;
pub const R1: u8 = 1;
pub const R2: u8 = 2;
pub const R3: u8 = 3;
pub const R4: u8 = 4;
pub const R5: u8 = 5;
pub const R6: u8 = 6;
pub const R7: u8 = 7;
pub const R8: u8 = 8;

/// Access sizes of loads and stores.
#[derive(Debug, Clone, Copy)]
pub enum Size {
    B = 0x10,
    H = 0x08,
    W = 0x00,
    Dw = 0x18,
}

/// 64-bit ALU operations (with an immediate or a register).
#[derive(Debug, Clone, Copy)]
pub enum Alu {
    Add = 0x00,
    Sub = 0x10,
    And = 0x50,
    Rsh = 0x70,
    Xor = 0xa0,
    Mov = 0xb0,
}

/// Conditional jumps.
#[derive(Debug, Clone, Copy)]
pub enum Jmp {
    Eq = 0x10,
    Gt = 0x20,
    Ne = 0x50,
}

const CLASS_LDX: u8 = 0x01;
const CLASS_STX: u8 = 0x03;
const CLASS_JMP: u8 = 0x05;
const CLASS_ALU: u8 = 0x04;
const CLASS_ALU64: u8 = 0x07;
const MODE_MEM: u8 = 0x60;
const SRC_X: u8 = 0x08;

/// An instruction from its fields.
pub const fn raw(op: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    let o = off.to_le_bytes();
    let i = imm.to_le_bytes();
    [op, dst | (src << 4), o[0], o[1], i[0], i[1], i[2], i[3]]
}

/// `dst op= imm` (64-bit).
pub const fn alu_imm(op: Alu, dst: u8, imm: i32) -> Insn {
    raw(CLASS_ALU64 | op as u8, dst, 0, 0, imm)
}

/// `dst op= src` (64-bit).
pub const fn alu_reg(op: Alu, dst: u8, src: u8) -> Insn {
    raw(CLASS_ALU64 | op as u8 | SRC_X, dst, src, 0, 0)
}

/// `dst = imm`.
pub const fn mov_imm(dst: u8, imm: i32) -> Insn {
    alu_imm(Alu::Mov, dst, imm)
}

/// `dst = src`.
pub const fn mov_reg(dst: u8, src: u8) -> Insn {
    alu_reg(Alu::Mov, dst, src)
}

/// `dst = htobe16(dst)`: the low 16 bits in network order (the rest
/// cleared), so that a 16-bit store writes them as the wire wants.
pub const fn be16(dst: u8) -> Insn {
    // BPF_ALU | BPF_END | BPF_TO_BE.
    raw(CLASS_ALU | 0xd0 | SRC_X, dst, 0, 0, 16)
}

/// `dst = *(size *)(src + off)`.
pub const fn ldx(size: Size, dst: u8, src: u8, off: i16) -> Insn {
    raw(CLASS_LDX | MODE_MEM | size as u8, dst, src, off, 0)
}

/// `*(size *)(dst + off) = src`.
pub const fn stx(size: Size, dst: u8, off: i16, src: u8) -> Insn {
    raw(CLASS_STX | MODE_MEM | size as u8, dst, src, off, 0)
}

/// `dst = imm` for a 64-bit immediate: two instruction slots.
pub const fn ld_imm64(dst: u8, imm: u64) -> [Insn; 2] {
    [
        raw(0x18, dst, 0, 0, imm as u32 as i32),
        raw(0, 0, 0, 0, (imm >> 32) as u32 as i32),
    ]
}

/// `r0 = helper(r1, ..., r5)`.
pub const fn call(helper: u32) -> Insn {
    raw(CLASS_JMP | 0x80, 0, 0, 0, helper as i32)
}

/// `return r0`.
pub const fn exit() -> Insn {
    raw(CLASS_JMP | 0x90, 0, 0, 0, 0)
}

/// A jump target of [`Asm`], placed with [`Asm::label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// A program being assembled: instructions in order, with forward jumps
/// to labels resolved by [`Asm::finish`].
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    /// Where each label is (an instruction index), once placed.
    labels: Vec<Option<usize>>,
    /// Jumps to patch: (instruction index, label).
    jumps: Vec<(usize, Label)>,
}

impl Asm {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends instructions.
    pub fn push(&mut self, insns: &[Insn]) -> &mut Self {
        self.insns.extend_from_slice(insns);
        self
    }

    /// A new label, not placed yet.
    pub fn new_label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `l` at the next instruction.
    pub fn label(&mut self, l: Label) -> &mut Self {
        self.labels[l.0] = Some(self.insns.len());
        self
    }

    /// `if dst op imm goto to`.
    pub fn jmp_imm(&mut self, op: Jmp, dst: u8, imm: i32, to: Label) -> &mut Self {
        self.jumps.push((self.insns.len(), to));
        self.push(&[raw(CLASS_JMP | op as u8, dst, 0, 0, imm)])
    }

    /// `if dst op src goto to`.
    pub fn jmp_reg(&mut self, op: Jmp, dst: u8, src: u8, to: Label) -> &mut Self {
        self.jumps.push((self.insns.len(), to));
        self.push(&[raw(CLASS_JMP | op as u8 | SRC_X, dst, src, 0, 0)])
    }

    /// The instructions, with every jump pointing at its label.
    ///
    /// # Panics
    /// If a label jumped to was never placed, or lies before its jump:
    /// programming errors of the caller (BPF jumps backwards are loops,
    /// which these programs do not have).
    pub fn finish(mut self) -> Vec<Insn> {
        for &(at, l) in &self.jumps {
            let to = self.labels[l.0].expect("a label jumped to is placed");
            assert!(to > at, "jumps go forwards");
            let off = i16::try_from(to - at - 1).expect("a jump fits 16 bits");
            self.insns[at][2..4].copy_from_slice(&off.to_le_bytes());
        }
        self.insns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        // Against the kernel's own encodings (`include/linux/filter.h`).
        assert_eq!(mov_imm(R1, 0x0102_0304), [0xb7, 1, 0, 0, 4, 3, 2, 1]);
        assert_eq!(mov_reg(R6, R1), [0xbf, 0x16, 0, 0, 0, 0, 0, 0]);
        assert_eq!(alu_imm(Alu::Add, R4, 64), [0x07, 4, 0, 0, 64, 0, 0, 0]);
        assert_eq!(alu_imm(Alu::Rsh, R8, 16), [0x77, 8, 0, 0, 16, 0, 0, 0]);
        assert_eq!(ldx(Size::W, R2, R6, 76), [0x61, 0x62, 76, 0, 0, 0, 0, 0]);
        assert_eq!(ldx(Size::Dw, R5, R2, 0)[0], 0x79);
        assert_eq!(stx(Size::H, R2, 16, R7), [0x6b, 0x72, 16, 0, 0, 0, 0, 0]);
        assert_eq!(be16(R7), [0xdc, 7, 0, 0, 16, 0, 0, 0]);
        assert_eq!(call(155), [0x85, 0, 0, 0, 155, 0, 0, 0]);
        assert_eq!(exit()[0], 0x95);
        let [a, b] = ld_imm64(R4, 0x1122_3344_5566_7788);
        assert_eq!(a, [0x18, 4, 0, 0, 0x88, 0x77, 0x66, 0x55]);
        assert_eq!(b, [0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
    }

    #[test]
    fn forward_jumps() {
        let mut a = Asm::new();
        let out = a.new_label();
        a.jmp_imm(Jmp::Ne, R0, 0, out)
            .push(&[mov_imm(R0, 1), exit()])
            .label(out)
            .push(&[mov_imm(R0, 2), exit()]);
        let p = a.finish();
        assert_eq!(p[0], [0x55, 0, 2, 0, 0, 0, 0, 0]);
        assert_eq!(p.len(), 5);
    }
}
