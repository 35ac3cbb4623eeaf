// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

import {IFungible, SafeMove} from "./Interfaces.sol";
import {WideMath, TickPrice, RangeMath} from "./TickMath.sol";

/// Whoever calls a pool's mint or swap pays what it owes in this callback.
interface IPoolPayer {
    function poolPay(uint256 owed0, uint256 owed1, bytes calldata data) external;
}

/// A pool of two tokens whose liquidity is placed over tick ranges. Everything that identifies
/// the pool is immutable, so all pools run the same code up to PUSH immediates.
contract TickPool {
    using SafeMove for address;

    struct Slot0 {
        uint160 price;
        int24 tick;
        bool unlocked;
    }

    struct TickInfo {
        uint128 gross;
        int128 net;
        uint256 outside0;
        uint256 outside1;
    }

    /// The state of a swap as it walks from range to range.
    struct Walk {
        uint256 remaining;
        uint256 out;
        uint160 price;
        int24 tick;
        uint128 liquidity;
        uint256 growth0;
        uint256 growth1;
    }

    address public immutable factory;
    address public immutable token0;
    address public immutable token1;
    uint24 public immutable fee;
    int24 public immutable tickSpacing;
    uint128 public immutable maxLiquidityPerTick;

    Slot0 public slot0;
    uint128 public liquidity;
    uint256 public feeGrowth0;
    uint256 public feeGrowth1;
    mapping(int24 => TickInfo) public ticks;
    mapping(int16 => uint256) public tickBitmap;
    mapping(bytes32 => uint128) public positions;

    event Initialize(uint160 price, int24 tick);
    event Mint(address indexed owner, int24 lower, int24 upper, uint128 amount, uint256 amount0, uint256 amount1);
    event Burn(address indexed owner, int24 lower, int24 upper, uint128 amount, uint256 amount0, uint256 amount1);
    event Swap(address indexed sender, address indexed to, bool zeroForOne, uint256 amountIn, uint256 amountOut, uint160 price, int24 tick);

    modifier lock() {
        require(slot0.unlocked, "locked");
        slot0.unlocked = false;
        _;
        slot0.unlocked = true;
    }

    constructor(address token0_, address token1_, uint24 fee_, int24 spacing_) {
        factory = msg.sender;
        token0 = token0_;
        token1 = token1_;
        fee = fee_;
        tickSpacing = spacing_;
        int24 lowest = (TickPrice.MIN_TICK / spacing_) * spacing_;
        int24 highest = (TickPrice.MAX_TICK / spacing_) * spacing_;
        uint24 count = uint24((highest - lowest) / spacing_) + 1;
        maxLiquidityPerTick = type(uint128).max / count;
    }

    function initialize(uint160 price) external {
        require(slot0.price == 0, "initialized");
        int24 tick = TickPrice.tickAt(price, TickPrice.MIN_TICK, TickPrice.MAX_TICK);
        slot0 = Slot0(price, tick, true);
        emit Initialize(price, tick);
    }

    function positionKey(address owner, int24 lower, int24 upper) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(owner, lower, upper));
    }

    /// Adds `amount` of liquidity over [lower, upper) for `owner`; the caller pays in poolPay.
    function mint(address owner, int24 lower, int24 upper, uint128 amount, bytes calldata data)
        external
        lock
        returns (uint256 amount0, uint256 amount1)
    {
        require(amount > 0, "amount");
        (amount0, amount1) = _modify(owner, lower, upper, int128(amount));
        uint256 before0 = amount0 > 0 ? _balance0() : 0;
        uint256 before1 = amount1 > 0 ? _balance1() : 0;
        IPoolPayer(msg.sender).poolPay(amount0, amount1, data);
        if (amount0 > 0) require(_balance0() >= before0 + amount0, "paid 0");
        if (amount1 > 0) require(_balance1() >= before1 + amount1, "paid 1");
        emit Mint(owner, lower, upper, amount, amount0, amount1);
    }

    /// Removes the caller's liquidity over [lower, upper) and sends its tokens back.
    function burn(int24 lower, int24 upper, uint128 amount)
        external
        lock
        returns (uint256 amount0, uint256 amount1)
    {
        require(amount > 0 && amount <= uint128(type(int128).max), "amount");
        (amount0, amount1) = _modify(msg.sender, lower, upper, -int128(amount));
        if (amount0 > 0) token0.give(msg.sender, amount0);
        if (amount1 > 0) token1.give(msg.sender, amount1);
        emit Burn(msg.sender, lower, upper, amount, amount0, amount1);
    }

    /// Swaps exactly `amountIn` (less what the price limit leaves) and sends the output to `to`;
    /// the caller pays the input in poolPay.
    function swap(address to, bool zeroForOne, uint256 amountIn, uint160 limit, bytes calldata data)
        external
        returns (uint256 amountOut)
    {
        require(amountIn > 0, "amount");
        Slot0 memory s = slot0;
        require(s.unlocked, "locked");
        require(
            zeroForOne
                ? limit < s.price && limit > TickPrice.MIN_PRICE
                : limit > s.price && limit < TickPrice.MAX_PRICE,
            "limit"
        );
        uint128 startLiquidity = liquidity;
        Walk memory w = Walk(amountIn, 0, s.price, s.tick, startLiquidity, feeGrowth0, feeGrowth1);
        while (w.remaining != 0 && w.price != limit) {
            _walkOneRange(w, zeroForOne, limit);
        }
        slot0 = Slot0(w.price, w.tick, false);
        if (w.liquidity != startLiquidity) liquidity = w.liquidity;
        if (zeroForOne) feeGrowth0 = w.growth0;
        else feeGrowth1 = w.growth1;

        uint256 used = amountIn - w.remaining;
        amountOut = w.out;
        if (zeroForOne) {
            if (amountOut > 0) token1.give(to, amountOut);
            uint256 before = _balance0();
            IPoolPayer(msg.sender).poolPay(used, 0, data);
            require(_balance0() >= before + used, "paid 0");
        } else {
            if (amountOut > 0) token0.give(to, amountOut);
            uint256 before = _balance1();
            IPoolPayer(msg.sender).poolPay(0, used, data);
            require(_balance1() >= before + used, "paid 1");
        }
        emit Swap(msg.sender, to, zeroForOne, used, amountOut, w.price, w.tick);
        slot0.unlocked = true;
    }

    function _walkOneRange(Walk memory w, bool zeroForOne, uint160 limit) private {
        (int24 next, bool initialized) = _nextTick(w.tick, zeroForOne);
        if (next < TickPrice.MIN_TICK) next = TickPrice.MIN_TICK;
        else if (next > TickPrice.MAX_TICK) next = TickPrice.MAX_TICK;
        uint160 start = w.price;
        uint160 edge = TickPrice.priceAt(next);
        uint160 target = zeroForOne ? (edge < limit ? limit : edge) : (edge > limit ? limit : edge);
        (uint160 price, uint256 inAmount, uint256 outAmount, uint256 feeAmount) =
            RangeMath.step(start, target, w.liquidity, w.remaining, fee);
        w.price = price;
        w.remaining -= inAmount + feeAmount;
        w.out += outAmount;
        if (w.liquidity > 0) {
            uint256 growth = WideMath.mulDiv(feeAmount, 1 << 128, w.liquidity);
            unchecked {
                if (zeroForOne) w.growth0 += growth;
                else w.growth1 += growth;
            }
        }
        if (price == edge) {
            if (initialized) {
                TickInfo storage t = ticks[next];
                unchecked {
                    t.outside0 = w.growth0 - t.outside0;
                    t.outside1 = w.growth1 - t.outside1;
                }
                int128 net = zeroForOne ? -t.net : t.net;
                w.liquidity = _addDelta(w.liquidity, net);
            }
            w.tick = zeroForOne ? next - 1 : next;
        } else if (price != start) {
            w.tick = zeroForOne
                ? TickPrice.tickAt(price, next, w.tick)
                : TickPrice.tickAt(price, w.tick, next - 1);
        }
    }

    /// The next tick with liquidity in the same bitmap word, or the word's edge.
    function _nextTick(int24 tick, bool down) private view returns (int24, bool) {
        int24 spacing = tickSpacing;
        int24 c = tick / spacing;
        if (tick < 0 && tick % spacing != 0) c--;
        if (down) {
            (int16 word, uint8 bit) = _place(c);
            uint256 masked = tickBitmap[word] & (((1 << bit) - 1) | (1 << bit));
            if (masked != 0) {
                return ((c - int24(uint24(bit - WideMath.highBit(masked)))) * spacing, true);
            }
            return ((c - int24(uint24(bit))) * spacing, false);
        } else {
            (int16 word, uint8 bit) = _place(c + 1);
            uint256 masked = tickBitmap[word] & ~((1 << bit) - 1);
            if (masked != 0) {
                return ((c + 1 + int24(uint24(WideMath.lowBit(masked) - bit))) * spacing, true);
            }
            return ((c + 1 + int24(uint24(255 - bit))) * spacing, false);
        }
    }

    function _place(int24 compressed) private pure returns (int16 word, uint8 bit) {
        word = int16(compressed >> 8);
        bit = uint8(uint24(compressed));
    }

    function _modify(address owner, int24 lower, int24 upper, int128 delta)
        private
        returns (uint256 amount0, uint256 amount1)
    {
        int24 spacing = tickSpacing;
        require(lower < upper, "order");
        require(lower >= TickPrice.MIN_TICK && upper <= TickPrice.MAX_TICK, "range");
        require(lower % spacing == 0 && upper % spacing == 0, "spacing");
        Slot0 memory s = slot0;
        require(s.price != 0, "uninitialized");

        bytes32 key = positionKey(owner, lower, upper);
        positions[key] = _addDelta(positions[key], delta);
        _updateTick(lower, delta, false, s.tick);
        _updateTick(upper, delta, true, s.tick);

        bool up = delta > 0;
        uint128 size = up ? uint128(delta) : uint128(-delta);
        uint160 pl = TickPrice.priceAt(lower);
        uint160 pu = TickPrice.priceAt(upper);
        if (s.tick < lower) {
            amount0 = RangeMath.amount0Between(pl, pu, size, up);
        } else if (s.tick < upper) {
            amount0 = RangeMath.amount0Between(s.price, pu, size, up);
            amount1 = RangeMath.amount1Between(pl, s.price, size, up);
            liquidity = _addDelta(liquidity, delta);
        } else {
            amount1 = RangeMath.amount1Between(pl, pu, size, up);
        }
    }

    function _updateTick(int24 tick, int128 delta, bool upper, int24 current) private {
        TickInfo storage t = ticks[tick];
        uint128 before = t.gross;
        uint128 gross = _addDelta(before, delta);
        require(gross <= maxLiquidityPerTick, "tick full");
        if (before == 0 && tick <= current) {
            t.outside0 = feeGrowth0;
            t.outside1 = feeGrowth1;
        }
        t.gross = gross;
        t.net = upper ? t.net - delta : t.net + delta;
        if ((before == 0) != (gross == 0)) {
            (int16 word, uint8 bit) = _place(tick / tickSpacing);
            tickBitmap[word] ^= 1 << bit;
            if (gross == 0) delete ticks[tick];
        }
    }

    function _addDelta(uint128 x, int128 d) private pure returns (uint128) {
        return d < 0 ? x - uint128(-d) : x + uint128(d);
    }

    function _balance0() private view returns (uint256) {
        return IFungible(token0).balanceOf(address(this));
    }

    function _balance1() private view returns (uint256) {
        return IFungible(token1).balanceOf(address(this));
    }
}

/// Deploys tick pools at CREATE2 addresses, one per token pair and fee tier.
contract TickPoolFactory {
    address public owner;
    mapping(uint24 => int24) public feeSpacing;
    mapping(address => mapping(address => mapping(uint24 => address))) public getPool;
    address[] public allPools;

    event PoolCreated(address indexed token0, address indexed token1, uint24 indexed fee, int24 spacing, address pool);

    constructor() {
        owner = msg.sender;
        feeSpacing[500] = 10;
        feeSpacing[3000] = 60;
        feeSpacing[10000] = 200;
    }

    function allPoolsLength() external view returns (uint256) {
        return allPools.length;
    }

    function createPool(address a, address b, uint24 fee) external returns (address pool) {
        require(a != b, "identical");
        (address t0, address t1) = a < b ? (a, b) : (b, a);
        require(t0 != address(0), "zero");
        int24 spacing = feeSpacing[fee];
        require(spacing != 0, "fee");
        require(getPool[t0][t1][fee] == address(0), "exists");
        pool = address(new TickPool{salt: keccak256(abi.encode(t0, t1, fee))}(t0, t1, fee, spacing));
        getPool[t0][t1][fee] = pool;
        getPool[t1][t0][fee] = pool;
        allPools.push(pool);
        emit PoolCreated(t0, t1, fee, spacing, pool);
    }
}

/// Periphery for tick pools: positions and exact-input swaps (single pool or a path),
/// paying pools from the caller's approvals in their callback.
contract TickRouter is IPoolPayer {
    using SafeMove for address;

    TickPoolFactory public immutable factory;

    struct Payment {
        address payer;
        address token0;
        address token1;
        uint24 fee;
    }

    modifier live(uint256 deadline) {
        require(block.timestamp <= deadline, "expired");
        _;
    }

    constructor(TickPoolFactory factory_) {
        factory = factory_;
    }

    function poolPay(uint256 owed0, uint256 owed1, bytes calldata data) external {
        Payment memory p = abi.decode(data, (Payment));
        require(msg.sender == factory.getPool(p.token0, p.token1, p.fee), "not a pool");
        _pay(p.token0, p.payer, owed0);
        _pay(p.token1, p.payer, owed1);
    }

    function _pay(address token, address payer, uint256 amount) private {
        if (amount == 0) return;
        if (payer == address(this)) token.give(msg.sender, amount);
        else token.take(payer, msg.sender, amount);
    }

    function addPosition(
        address tokenA,
        address tokenB,
        uint24 fee,
        int24 lower,
        int24 upper,
        uint128 amount,
        uint256 deadline
    ) external live(deadline) returns (uint256, uint256) {
        Payment memory p = tokenA < tokenB
            ? Payment(msg.sender, tokenA, tokenB, fee)
            : Payment(msg.sender, tokenB, tokenA, fee);
        return _pool(p.token0, p.token1, fee).mint(msg.sender, lower, upper, amount, abi.encode(p));
    }

    function exactInputSingle(
        address tokenIn,
        address tokenOut,
        uint24 fee,
        uint256 amountIn,
        uint256 minOut,
        address to,
        uint256 deadline
    ) external live(deadline) returns (uint256 amountOut) {
        amountOut = _swap(tokenIn, tokenOut, fee, amountIn, to, msg.sender);
        require(amountOut >= minOut, "slippage");
    }

    /// Swaps along tokens[0] -> tokens[1] -> ... through the pools of fees[i].
    function exactInput(
        address[] calldata tokens,
        uint24[] calldata fees,
        uint256 amountIn,
        uint256 minOut,
        address to,
        uint256 deadline
    ) external live(deadline) returns (uint256 amountOut) {
        require(tokens.length >= 2 && fees.length == tokens.length - 1, "path");
        amountOut = amountIn;
        for (uint256 i = 0; i < fees.length; ++i) {
            bool last = i + 1 == fees.length;
            amountOut = _swap(
                tokens[i], tokens[i + 1], fees[i], amountOut, last ? to : address(this), i == 0 ? msg.sender : address(this)
            );
        }
        require(amountOut >= minOut, "slippage");
    }

    function _swap(address tokenIn, address tokenOut, uint24 fee, uint256 amountIn, address to, address payer)
        private
        returns (uint256)
    {
        bool zeroForOne = tokenIn < tokenOut;
        Payment memory p = zeroForOne
            ? Payment(payer, tokenIn, tokenOut, fee)
            : Payment(payer, tokenOut, tokenIn, fee);
        uint160 limit = zeroForOne ? TickPrice.MIN_PRICE + 1 : TickPrice.MAX_PRICE - 1;
        return _pool(p.token0, p.token1, fee).swap(to, zeroForOne, amountIn, limit, abi.encode(p));
    }

    function _pool(address t0, address t1, uint24 fee) private view returns (TickPool pool) {
        pool = TickPool(factory.getPool(t0, t1, fee));
        require(address(pool) != address(0), "no pool");
    }
}
