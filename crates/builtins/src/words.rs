//! Word operations for the baseline tier: every opcode that the optimising tier lowers to
//! inline 256-bit arithmetic is here a call on stack slots.
//!
//! The baseline tier compiles without any 256-bit value in its IR, so that LLVM selects its
//! instructions with FastISel (which gives up on the first value wider than a register) and
//! compiles in a fraction of the time. The price is a call per arithmetic opcode, which is
//! still cheaper than the interpreter's dispatch, gas and stack checks per opcode.
//!
//! The layout is [`crate::StackBuiltin`]'s: `p` points at the deepest operand, the top of the
//! stack is at `p + n - 1`, and the result replaces `*p`. The top operand is the opcode's first
//! (`a` in the yellow paper's `a - b`).

use crate::{kiln_grow_memory, read_word, KilnCtx};
use core::cmp::Ordering;
use revm::{interpreter::instructions::i256::i256_cmp, primitives::U256};

/// Reads the two operands of a binary opcode: the top (`a`) and the one below it (`b`).
///
/// # Safety
/// `p` and `p + 1` must be valid, initialised stack slots.
#[inline(always)]
unsafe fn ab(p: *const U256) -> (U256, U256) {
    // SAFETY: forwarded from the caller.
    unsafe { (read_word(p.add(1)), read_word(p)) }
}

fn bool_word(b: bool) -> U256 {
    U256::from(b as u8)
}

/// Shift amounts of 256 and more, as `usize::MAX` (every shift then clears the word).
fn shift_amount(s: U256) -> usize {
    if s < U256::from(256) {
        s.as_limbs()[0] as usize
    } else {
        usize::MAX
    }
}

macro_rules! binary_words {
    ($( $(#[$doc:meta])* $name:ident ($a:ident, $b:ident) => $body:expr; )*) => {
        $(
            $(#[$doc])*
            ///
            /// # Safety
            /// `p` and `p + 1` must be valid, initialised stack slots.
            #[no_mangle]
            pub unsafe extern "C" fn $name(p: *mut U256) {
                // SAFETY: forwarded from this function's contract.
                let ($a, $b) = unsafe { ab(p) };
                let r: U256 = $body;
                // SAFETY: as above.
                unsafe { *p = r };
            }
        )*
    };
}

macro_rules! unary_words {
    ($( $(#[$doc:meta])* $name:ident ($a:ident) => $body:expr; )*) => {
        $(
            $(#[$doc])*
            ///
            /// # Safety
            /// `p` must be a valid, initialised stack slot.
            #[no_mangle]
            pub unsafe extern "C" fn $name(p: *mut U256) {
                // SAFETY: forwarded from this function's contract.
                let $a = unsafe { read_word(p) };
                let r: U256 = $body;
                // SAFETY: as above.
                unsafe { *p = r };
            }
        )*
    };
}

binary_words! {
    /// ADD.
    kiln_w_add(a, b) => a.wrapping_add(b);
    /// MUL.
    kiln_w_mul(a, b) => a.wrapping_mul(b);
    /// SUB.
    kiln_w_sub(a, b) => a.wrapping_sub(b);
    /// LT.
    kiln_w_lt(a, b) => bool_word(a < b);
    /// GT.
    kiln_w_gt(a, b) => bool_word(a > b);
    /// SLT.
    kiln_w_slt(a, b) => bool_word(i256_cmp(&a, &b) == Ordering::Less);
    /// SGT.
    kiln_w_sgt(a, b) => bool_word(i256_cmp(&a, &b) == Ordering::Greater);
    /// EQ.
    kiln_w_eq(a, b) => bool_word(a == b);
    /// AND.
    kiln_w_and(a, b) => a & b;
    /// OR.
    kiln_w_or(a, b) => a | b;
    /// XOR.
    kiln_w_xor(a, b) => a ^ b;
    /// BYTE: byte `a` of `b`, counted from the most significant.
    kiln_w_byte(a, b) => match usize::try_from(a) {
        Ok(i) if i < 32 => U256::from(b.byte(31 - i)),
        _ => U256::ZERO,
    };
    /// SHL: `b` shifted left by `a`.
    kiln_w_shl(a, b) => match shift_amount(a) {
        usize::MAX => U256::ZERO,
        s => b << s,
    };
    /// SHR: `b` shifted right by `a`, logically.
    kiln_w_shr(a, b) => match shift_amount(a) {
        usize::MAX => U256::ZERO,
        s => b >> s,
    };
    /// SAR: `b` shifted right by `a`, arithmetically.
    kiln_w_sar(a, b) => match shift_amount(a) {
        usize::MAX if b.bit(255) => U256::MAX,
        usize::MAX => U256::ZERO,
        s => b.arithmetic_shr(s),
    };
    /// SIGNEXTEND: `b` sign-extended from its byte `a` (counted from the least significant).
    kiln_w_signextend(a, b) => match usize::try_from(a) {
        Ok(k) if k < 31 => {
            let bit = k * 8 + 7;
            let mask = (U256::ONE << bit) - U256::ONE;
            if b.bit(bit) { b | !mask } else { b & mask }
        }
        _ => b,
    };
}

unary_words! {
    /// ISZERO.
    kiln_w_iszero(a) => bool_word(a.is_zero());
    /// NOT.
    kiln_w_not(a) => !a;
    /// CLZ.
    kiln_w_clz(a) => U256::from(a.leading_zeros());
}

/// Makes room for `len` bytes at the offset word `offset`, as [`kiln_grow_memory`] (which
/// charges the expansion and reports the interpreter's halt); returns the byte offset.
///
/// # Safety
/// As [`kiln_grow_memory`].
#[inline(always)]
unsafe fn memory_at(ctx: *mut KilnCtx<'_>, offset: U256, len: u64) -> Result<usize, u8> {
    let [low, a, b, c] = *offset.as_limbs();
    // SAFETY: forwarded from the caller.
    let mem_len = unsafe { (*ctx).mem_len };
    if (a | b | c) == 0 && low.checked_add(len).is_some_and(|end| end <= mem_len) {
        return Ok(low as usize);
    }
    // SAFETY: forwarded from the caller.
    match unsafe { kiln_grow_memory(ctx, low, a | b | c, len, 0, 0) } {
        0 => Ok(low as usize),
        status => Err(status),
    }
}

/// MLOAD for the baseline tier: the offset on top of the stack is replaced by the word at it.
/// Memory growth, its gas and its halts are [`kiln_grow_memory`]'s.
///
/// # Safety
/// Called only by compiled code with the context the dispatcher set up, `sp >= 1`, and the
/// frame's gas in `ctx.gas`.
#[no_mangle]
pub unsafe extern "C" fn kiln_mload(ctx: *mut KilnCtx<'_>) -> u8 {
    // SAFETY: the section check before the call proved the operand is on the stack.
    let top = unsafe { (*ctx).stack.add((*ctx).sp as usize - 1) };
    // SAFETY: as above, and forwarded from this function's contract.
    let at = match unsafe { memory_at(ctx, read_word(top), 32) } {
        Ok(at) => at,
        Err(status) => return status,
    };
    // SAFETY: `memory_at` made `at..at + 32` part of the frame's memory, at `ctx.mem`.
    let bytes = unsafe { *(*ctx).mem.add(at).cast::<[u8; 32]>() };
    // SAFETY: `top` is the stack's top slot.
    unsafe { *top = U256::from_be_bytes(bytes) };
    0
}

/// MSTORE for the baseline tier, as [`kiln_mload`]: pops the offset and the value.
///
/// # Safety
/// As [`kiln_mload`], with `sp >= 2`.
#[no_mangle]
pub unsafe extern "C" fn kiln_mstore(ctx: *mut KilnCtx<'_>) -> u8 {
    // SAFETY: the section check before the call proved both operands are on the stack.
    let (top, sp) = unsafe { ((*ctx).stack.add((*ctx).sp as usize - 1), (*ctx).sp) };
    // SAFETY: as above, and forwarded from this function's contract.
    let at = match unsafe { memory_at(ctx, read_word(top), 32) } {
        Ok(at) => at,
        Err(status) => return status,
    };
    // SAFETY: the value lies below the offset; `memory_at` made `at..at + 32` memory.
    unsafe {
        let value = read_word(top.sub(1));
        *(*ctx).mem.add(at).cast::<[u8; 32]>() = value.to_be_bytes::<32>();
        (*ctx).sp = sp - 2;
    }
    0
}

/// MSTORE8 for the baseline tier, as [`kiln_mstore`].
///
/// # Safety
/// As [`kiln_mstore`].
#[no_mangle]
pub unsafe extern "C" fn kiln_mstore8(ctx: *mut KilnCtx<'_>) -> u8 {
    // SAFETY: the section check before the call proved both operands are on the stack.
    let (top, sp) = unsafe { ((*ctx).stack.add((*ctx).sp as usize - 1), (*ctx).sp) };
    // SAFETY: as above, and forwarded from this function's contract.
    let at = match unsafe { memory_at(ctx, read_word(top), 1) } {
        Ok(at) => at,
        Err(status) => return status,
    };
    // SAFETY: as in `kiln_mstore`, for one byte.
    unsafe {
        *(*ctx).mem.add(at) = read_word(top.sub(1)).as_limbs()[0] as u8;
        (*ctx).sp = sp - 2;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{builtin_for_opcode, BuiltinFn, BuiltinKind};
    use revm::bytecode::opcode;

    /// Runs the word builtin for `op` on `stack` (top last) and returns the result.
    fn run(op: u8, stack: &[U256]) -> U256 {
        let b = builtin_for_opcode(op, BuiltinKind::Word).unwrap();
        assert_eq!(b.operands, stack.len());
        let BuiltinFn::Slots(f) = b.func else {
            panic!("{} is not a slots builtin", b.name)
        };
        let mut words = stack.to_vec();
        // SAFETY: `words` holds `n` initialised words.
        unsafe { f(words.as_mut_ptr()) };
        words[0]
    }

    #[test]
    fn operands_are_top_first() {
        let (two, five) = (U256::from(2), U256::from(5));
        // a - b with a on top: 5 - 2.
        assert_eq!(run(opcode::SUB, &[two, five]), U256::from(3));
        assert_eq!(run(opcode::LT, &[five, two]), U256::ONE);
        assert_eq!(run(opcode::SHL, &[five, U256::from(1)]), U256::from(10));
        assert_eq!(
            run(opcode::BYTE, &[U256::from(0xab), U256::from(31)]),
            U256::from(0xab)
        );
    }

    #[test]
    fn edge_cases_follow_the_yellow_paper() {
        let minus_one = U256::MAX;
        assert_eq!(run(opcode::SAR, &[minus_one, U256::from(300)]), U256::MAX);
        assert_eq!(run(opcode::SAR, &[U256::ONE, U256::from(300)]), U256::ZERO);
        assert_eq!(run(opcode::SHR, &[minus_one, U256::from(256)]), U256::ZERO);
        assert_eq!(run(opcode::SLT, &[U256::ONE, minus_one]), U256::ONE);
        assert_eq!(run(opcode::SGT, &[U256::ONE, minus_one]), U256::ZERO);
        assert_eq!(
            run(opcode::SIGNEXTEND, &[U256::from(0x80), U256::ZERO]),
            U256::MAX - U256::from(0x7f)
        );
        assert_eq!(
            run(opcode::SIGNEXTEND, &[U256::from(0x80), U256::from(31)]),
            U256::from(0x80)
        );
        assert_eq!(run(opcode::BYTE, &[minus_one, U256::from(32)]), U256::ZERO);
        assert_eq!(run(opcode::CLZ, &[U256::ZERO]), U256::from(256));
        assert_eq!(run(opcode::ISZERO, &[U256::ZERO]), U256::ONE);
    }
}
