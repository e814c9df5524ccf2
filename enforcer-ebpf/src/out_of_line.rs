//! Out-of-line functions of the XDP program, and why they return a scalar.
//!
//! The program keeps a few table operations out of line (`#[inline(never)]`): each gets its own
//! stack frame, so the deepest call chain stays within the 512-byte BPF stack. Such a BPF function
//! must hand back a scalar in r0:
//!
//! - A returned struct travels through a pointer into the caller's stack, and the verifier
//!   refuses to hand a stack pointer back to the caller ("cannot return stack pointer"). Results
//!   that do not fit a word go through an `&mut` argument instead (`policy::judge_into` in the
//!   program).
//! - A function left to return nothing leaves r0 as it last was: unset ("R0 !read_ok") or a
//!   pointer into the stack, both refused at the function's exit. And when the caller ignores a
//!   returned value, the compiler drops it as dead and r0 is again left as it was, so a caller that
//!   wants nothing back must still consume the word (`core::hint::black_box`).
//!
//! [`out_of_line!`](crate::out_of_line!) writes the idiom once: the function a caller sees is
//! inlined and keeps its natural signature; inside it an `#[inline(never)]` function runs the body
//! and returns its result packed in one word ([`InRegister`]), which the caller unpacks.

/// A result that travels back from an out-of-line function as one scalar word in r0.
pub trait InRegister {
    /// The word for r0.
    fn into_word(self) -> u64;
    /// The result again, from the word.
    fn from_word(word: u64) -> Self;
}

/// Nothing to return: the word is 0, and the caller consumes it anyway so that the compiler keeps
/// the out-of-line function's `r0 = 0` (see the module documentation).
impl InRegister for () {
    #[inline(always)]
    fn into_word(self) -> u64 {
        0
    }

    #[inline(always)]
    fn from_word(word: u64) -> Self {
        core::hint::black_box(word);
    }
}

impl InRegister for bool {
    #[inline(always)]
    fn into_word(self) -> u64 {
        u64::from(self)
    }

    #[inline(always)]
    fn from_word(word: u64) -> Self {
        word != 0
    }
}

/// Defines a function whose body runs out of line, returning its result through r0 as one word
/// (see the [module documentation](crate::out_of_line) for why).
///
/// ```ignore
/// out_of_line! {
///     /// Remembers a flow the policy just allowed.
///     pub fn remember(pkt: &Packet, j: &Judgement, epoch: u64, now: u64) {
///         // ...
///     }
/// }
/// ```
///
/// The body may `return` early as in any function. Arguments are plain `name: Type` pairs (at
/// most five: BPF passes arguments in r1-r5); the result type must implement [`InRegister`].
#[macro_export]
macro_rules! out_of_line {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$attr])*
        #[inline(always)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(never)]
            fn out_of_line($($arg: $ty),*) -> u64 {
                #[inline(always)]
                fn body($($arg: $ty),*) $(-> $ret)? $body
                $crate::out_of_line::InRegister::into_word(body($($arg),*))
            }
            $crate::out_of_line::InRegister::from_word(out_of_line($($arg),*))
        }
    };
}

#[cfg(test)]
mod tests {
    use super::InRegister;

    crate::out_of_line! {
        /// Counts calls through a `&mut`, returning nothing (the unit case).
        fn bump(n: &mut u32, by: u32) {
            if by == 0 {
                return;
            }
            *n += by;
        }
    }

    crate::out_of_line! {
        fn is_even(n: u32) -> bool {
            n % 2 == 0
        }
    }

    #[test]
    fn a_unit_body_runs_with_its_early_return() {
        let mut n = 1;
        bump(&mut n, 2);
        bump(&mut n, 0);
        assert_eq!(n, 3);
    }

    #[test]
    fn a_bool_result_survives_the_word() {
        assert!(is_even(4));
        assert!(!is_even(7));
        assert_eq!(true.into_word(), 1);
        assert_eq!(<()>::into_word(()), 0);
    }
}
