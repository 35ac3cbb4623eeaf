// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

/// 512-bit multiply-then-divide and friends.
library WideMath {
    /// floor(a * b / d) with a 512-bit intermediate product; reverts when the result overflows.
    function mulDiv(uint256 a, uint256 b, uint256 d) internal pure returns (uint256 q) {
        unchecked {
            uint256 lo;
            uint256 hi;
            assembly {
                let all := mulmod(a, b, not(0))
                lo := mul(a, b)
                hi := sub(sub(all, lo), lt(all, lo))
            }
            if (hi == 0) {
                require(d > 0, "div zero");
                return lo / d;
            }
            require(d > hi, "mulDiv overflow");
            uint256 rem;
            assembly {
                rem := mulmod(a, b, d)
                hi := sub(hi, gt(rem, lo))
                lo := sub(lo, rem)
            }
            // Divide out the largest power of two dividing d, shifting its bits from hi into lo.
            uint256 pow2 = d & (0 - d);
            assembly {
                d := div(d, pow2)
                lo := div(lo, pow2)
                pow2 := add(div(sub(0, pow2), pow2), 1)
            }
            lo |= hi * pow2;
            // d is now odd: invert it modulo 2^256 by Newton-Raphson, each step doubling the bits.
            uint256 inv = (3 * d) ^ 2;
            for (uint256 i = 0; i < 6; ++i) {
                inv *= 2 - d * inv;
            }
            q = lo * inv;
        }
    }

    /// ceil(a * b / d).
    function mulDivUp(uint256 a, uint256 b, uint256 d) internal pure returns (uint256 q) {
        q = mulDiv(a, b, d);
        if (mulmod(a, b, d) != 0) {
            require(q < type(uint256).max, "mulDivUp overflow");
            unchecked {
                ++q;
            }
        }
    }

    /// ceil(a / d).
    function divUp(uint256 a, uint256 d) internal pure returns (uint256) {
        require(d > 0, "div zero");
        unchecked {
            return a / d + (a % d == 0 ? 0 : 1);
        }
    }

    /// Index of the highest set bit of a non-zero value.
    function highBit(uint256 x) internal pure returns (uint8 r) {
        require(x > 0, "zero");
        unchecked {
            for (uint256 s = 128; s > 0; s >>= 1) {
                if (x >> s != 0) {
                    x >>= s;
                    r += uint8(s);
                }
            }
        }
    }

    /// Index of the lowest set bit of a non-zero value.
    function lowBit(uint256 x) internal pure returns (uint8) {
        unchecked {
            return highBit(x & (0 - x));
        }
    }
}

/// Prices are sqrt(1.0001^tick) in Q64.96; this library converts between ticks and prices.
library TickPrice {
    int24 internal constant MIN_TICK = -887272;
    int24 internal constant MAX_TICK = 887272;
    uint160 internal constant MIN_PRICE = 4295128739;
    uint160 internal constant MAX_PRICE = 1461446703485210103287273052203988822378723970342;

    /// sqrt(1.0001^tick) * 2^96, rounded up.
    function priceAt(int24 tick) internal pure returns (uint160) {
        uint256 n = tick < 0 ? uint256(-int256(tick)) : uint256(int256(tick));
        require(n <= uint256(int256(MAX_TICK)), "tick range");
        // r = 2^128 / sqrt(1.0001)^n, built from the binary digits of n; each factor is
        // 2^128 / sqrt(1.0001)^(2^i) rounded to the nearest integer.
        uint256 r = n & 1 != 0 ? 0xfffcb933bd6fad37aa2d162d1a594001 : 1 << 128;
        unchecked {
            if (n & 0x2 != 0) r = (r * 0xfff97272373d413259a46990580e213a) >> 128;
            if (n & 0x4 != 0) r = (r * 0xfff2e50f5f656932ef12357cf3c7fdcc) >> 128;
            if (n & 0x8 != 0) r = (r * 0xffe5caca7e10e4e61c3624eaa0941cd0) >> 128;
            if (n & 0x10 != 0) r = (r * 0xffcb9843d60f6159c9db58835c926644) >> 128;
            if (n & 0x20 != 0) r = (r * 0xff973b41fa98c081472e6896dfb254c0) >> 128;
            if (n & 0x40 != 0) r = (r * 0xff2ea16466c96a3843ec78b326b52861) >> 128;
            if (n & 0x80 != 0) r = (r * 0xfe5dee046a99a2a811c461f1969c3053) >> 128;
            if (n & 0x100 != 0) r = (r * 0xfcbe86c7900a88aedcffc83b479aa3a4) >> 128;
            if (n & 0x200 != 0) r = (r * 0xf987a7253ac413176f2b074cf7815e54) >> 128;
            if (n & 0x400 != 0) r = (r * 0xf3392b0822b70005940c7a398e4b70f3) >> 128;
            if (n & 0x800 != 0) r = (r * 0xe7159475a2c29b7443b29c7fa6e889d9) >> 128;
            if (n & 0x1000 != 0) r = (r * 0xd097f3bdfd2022b8845ad8f792aa5825) >> 128;
            if (n & 0x2000 != 0) r = (r * 0xa9f746462d870fdf8a65dc1f90e061e5) >> 128;
            if (n & 0x4000 != 0) r = (r * 0x70d869a156d2a1b890bb3df62baf32f7) >> 128;
            if (n & 0x8000 != 0) r = (r * 0x31be135f97d08fd981231505542fcfa6) >> 128;
            if (n & 0x10000 != 0) r = (r * 0x9aa508b5b7a84e1c677de54f3e99bc9) >> 128;
            if (n & 0x20000 != 0) r = (r * 0x5d6af8dedb81196699c329225ee604) >> 128;
            if (n & 0x40000 != 0) r = (r * 0x2216e584f5fa1ea926041bedfe98) >> 128;
            if (n & 0x80000 != 0) r = (r * 0x48a170391f7dc42444e8fa2) >> 128;
            // Positive ticks: the reciprocal. Then Q128.128 down to Q64.96, rounding up.
            if (tick > 0) r = type(uint256).max / r;
            return uint160((r >> 32) + (r & 0xffffffff == 0 ? 0 : 1));
        }
    }

    /// The greatest tick in [lo, hi] whose price is at most `price`, by bisection;
    /// the caller guarantees priceAt(lo) <= price.
    function tickAt(uint160 price, int24 lo, int24 hi) internal pure returns (int24) {
        require(price >= MIN_PRICE && price < MAX_PRICE, "price range");
        while (lo < hi) {
            int24 mid = int24((int256(lo) + int256(hi) + 1) >> 1);
            if (priceAt(mid) <= price) lo = mid;
            else hi = mid - 1;
        }
        return lo;
    }
}

/// Token amounts that a liquidity amount spans between two prices, and the price an amount moves to.
library RangeMath {
    using WideMath for uint256;

    uint256 internal constant Q96 = 1 << 96;

    /// Token0 between prices a < b: L * (b - a) / (a * b), scaled by 2^96.
    function amount0Between(uint160 a, uint160 b, uint128 liquidity, bool roundUp)
        internal
        pure
        returns (uint256)
    {
        if (a > b) (a, b) = (b, a);
        require(a > 0, "price zero");
        uint256 scaled = uint256(liquidity) << 96;
        uint256 width = b - a;
        return roundUp
            ? scaled.mulDivUp(width, b).divUp(a)
            : scaled.mulDiv(width, b) / a;
    }

    /// Token1 between prices a < b: L * (b - a) / 2^96.
    function amount1Between(uint160 a, uint160 b, uint128 liquidity, bool roundUp)
        internal
        pure
        returns (uint256)
    {
        if (a > b) (a, b) = (b, a);
        return roundUp
            ? uint256(liquidity).mulDivUp(b - a, Q96)
            : uint256(liquidity).mulDiv(b - a, Q96);
    }

    /// The price after `amountIn` enters a range of liquidity L at `price`.
    function priceAfterInput(uint160 price, uint128 liquidity, uint256 amountIn, bool zeroForOne)
        internal
        pure
        returns (uint160)
    {
        require(price > 0 && liquidity > 0, "empty");
        if (amountIn == 0) return price;
        uint256 scaled = uint256(liquidity) << 96;
        if (zeroForOne) {
            // Token0 in lowers the price: L * p / (L + amount * p), rounded up.
            unchecked {
                uint256 product = amountIn * price;
                if (product / amountIn == price) {
                    uint256 denom = scaled + product;
                    if (denom >= scaled) return uint160(scaled.mulDivUp(price, denom));
                }
            }
            return uint160(scaled.divUp(scaled / price + amountIn));
        }
        // Token1 in raises the price by amount / L, rounded down.
        uint256 rise = amountIn <= type(uint160).max
            ? (amountIn << 96) / liquidity
            : amountIn.mulDiv(Q96, liquidity);
        uint256 next = uint256(price) + rise;
        require(next <= type(uint160).max, "price overflow");
        return uint160(next);
    }

    /// One step of an exact-input swap towards `target` inside a range of constant liquidity.
    function step(uint160 price, uint160 target, uint128 liquidity, uint256 remaining, uint24 feePips)
        internal
        pure
        returns (uint160 next, uint256 amountIn, uint256 amountOut, uint256 fee)
    {
        bool zeroForOne = price >= target;
        uint256 afterFee = remaining.mulDiv(1e6 - feePips, 1e6);
        amountIn = zeroForOne
            ? amount0Between(target, price, liquidity, true)
            : amount1Between(price, target, liquidity, true);
        if (afterFee >= amountIn) {
            next = target;
        } else {
            next = priceAfterInput(price, liquidity, afterFee, zeroForOne);
        }
        bool reached = next == target;
        if (zeroForOne) {
            if (!reached) amountIn = amount0Between(next, price, liquidity, true);
            amountOut = amount1Between(next, price, liquidity, false);
        } else {
            if (!reached) amountIn = amount1Between(price, next, liquidity, true);
            amountOut = amount0Between(price, next, liquidity, false);
        }
        fee = reached ? amountIn.mulDivUp(feePips, 1e6 - feePips) : remaining - amountIn;
    }
}
