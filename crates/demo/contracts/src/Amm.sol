// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

import {IFungible, IWrappedEther, SafeMove} from "./Interfaces.sol";

/// A constant-product pool of two tokens; its shares are a token too.
contract ProductPair {
    using SafeMove for address;

    uint256 private constant LOCKED_SHARES = 1000;

    address public immutable factory;
    address public token0;
    address public token1;

    uint112 private reserve0;
    uint112 private reserve1;
    uint32 private lastUpdate;
    uint256 public cumulativePrice0;
    uint256 public cumulativePrice1;
    uint256 private unlocked = 1;

    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Mint(address indexed sender, uint256 amount0, uint256 amount1);
    event Swap(
        address indexed sender, uint256 in0, uint256 in1, uint256 out0, uint256 out1, address indexed to
    );
    event Sync(uint112 reserve0, uint112 reserve1);

    modifier lock() {
        require(unlocked == 1, "locked");
        unlocked = 2;
        _;
        unlocked = 1;
    }

    constructor() {
        factory = msg.sender;
    }

    function initialize(address t0, address t1) external {
        require(msg.sender == factory && token0 == address(0), "init");
        token0 = t0;
        token1 = t1;
    }

    function getReserves() public view returns (uint112, uint112, uint32) {
        return (reserve0, reserve1, lastUpdate);
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        balanceOf[msg.sender] -= amount;
        balanceOf[to] += amount;
        emit Transfer(msg.sender, to, amount);
        return true;
    }

    function mint(address to) external lock returns (uint256 shares) {
        (uint112 r0, uint112 r1,) = getReserves();
        uint256 b0 = IFungible(token0).balanceOf(address(this));
        uint256 b1 = IFungible(token1).balanceOf(address(this));
        uint256 a0 = b0 - r0;
        uint256 a1 = b1 - r1;
        uint256 supply = totalSupply;
        if (supply == 0) {
            shares = _isqrt(a0 * a1) - LOCKED_SHARES;
            _issue(address(0), LOCKED_SHARES);
        } else {
            uint256 s0 = a0 * supply / r0;
            uint256 s1 = a1 * supply / r1;
            shares = s0 < s1 ? s0 : s1;
        }
        require(shares > 0, "no shares");
        _issue(to, shares);
        _update(b0, b1, r0, r1);
        emit Mint(msg.sender, a0, a1);
    }

    function swap(uint256 out0, uint256 out1, address to) external lock {
        require(out0 > 0 || out1 > 0, "no output");
        (uint112 r0, uint112 r1,) = getReserves();
        require(out0 < r0 && out1 < r1, "reserves");
        address t0 = token0;
        address t1 = token1;
        require(to != t0 && to != t1, "to");
        if (out0 > 0) t0.give(to, out0);
        if (out1 > 0) t1.give(to, out1);
        (uint256 in0, uint256 in1) = _settle(t0, t1, out0, out1, r0, r1);
        emit Swap(msg.sender, in0, in1, out0, out1, to);
    }

    /// Measures the input, checks x * y = k net of the 0.3% fee, and stores the new reserves.
    function _settle(address t0, address t1, uint256 out0, uint256 out1, uint112 r0, uint112 r1)
        private
        returns (uint256 in0, uint256 in1)
    {
        uint256 b0 = IFungible(t0).balanceOf(address(this));
        uint256 b1 = IFungible(t1).balanceOf(address(this));
        in0 = b0 > r0 - out0 ? b0 - (r0 - out0) : 0;
        in1 = b1 > r1 - out1 ? b1 - (r1 - out1) : 0;
        require(in0 > 0 || in1 > 0, "no input");
        uint256 adj0 = b0 * 1000 - in0 * 3;
        uint256 adj1 = b1 * 1000 - in1 * 3;
        require(adj0 * adj1 >= uint256(r0) * r1 * 1_000_000, "k");
        _update(b0, b1, r0, r1);
    }

    function sync() external lock {
        _update(
            IFungible(token0).balanceOf(address(this)),
            IFungible(token1).balanceOf(address(this)),
            reserve0,
            reserve1
        );
    }

    function _issue(address to, uint256 amount) private {
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function _update(uint256 b0, uint256 b1, uint112 r0, uint112 r1) private {
        require(b0 <= type(uint112).max && b1 <= type(uint112).max, "overflow");
        uint32 now32 = uint32(block.timestamp);
        unchecked {
            uint32 elapsed = now32 - lastUpdate;
            if (elapsed > 0 && r0 != 0 && r1 != 0) {
                cumulativePrice0 += (uint256(r1) << 112) / r0 * elapsed;
                cumulativePrice1 += (uint256(r0) << 112) / r1 * elapsed;
            }
        }
        reserve0 = uint112(b0);
        reserve1 = uint112(b1);
        lastUpdate = now32;
        emit Sync(uint112(b0), uint112(b1));
    }

    function _isqrt(uint256 y) private pure returns (uint256 z) {
        if (y > 3) {
            z = y;
            uint256 x = y / 2 + 1;
            while (x < z) {
                z = x;
                x = (y / x + x) / 2;
            }
        } else if (y != 0) {
            z = 1;
        }
    }
}

/// Creates one constant-product pair per token pair, at a CREATE2 address.
contract PairFactory {
    mapping(address => mapping(address => address)) public getPair;
    address[] public allPairs;

    event PairCreated(address indexed token0, address indexed token1, address pair, uint256 index);

    function allPairsLength() external view returns (uint256) {
        return allPairs.length;
    }

    function createPair(address a, address b) external returns (address pair) {
        require(a != b, "identical");
        (address t0, address t1) = a < b ? (a, b) : (b, a);
        require(t0 != address(0), "zero");
        require(getPair[t0][t1] == address(0), "exists");
        pair = address(new ProductPair{salt: keccak256(abi.encodePacked(t0, t1))}());
        ProductPair(pair).initialize(t0, t1);
        getPair[t0][t1] = pair;
        getPair[t1][t0] = pair;
        allPairs.push(pair);
        emit PairCreated(t0, t1, pair, allPairs.length);
    }
}

/// Adds liquidity and swaps along paths of pairs; ether comes in through the wrapper.
contract PairRouter {
    using SafeMove for address;

    PairFactory public immutable factory;
    address public immutable weth;

    modifier live(uint256 deadline) {
        require(block.timestamp <= deadline, "expired");
        _;
    }

    constructor(PairFactory factory_, address weth_) {
        factory = factory_;
        weth = weth_;
    }

    receive() external payable {
        require(msg.sender == weth, "only wrapper");
    }

    function addLiquidity(
        address tokenA,
        address tokenB,
        uint256 wantA,
        uint256 wantB,
        address to,
        uint256 deadline
    ) external live(deadline) returns (uint256 amountA, uint256 amountB, uint256 shares) {
        address pair = factory.getPair(tokenA, tokenB);
        if (pair == address(0)) pair = factory.createPair(tokenA, tokenB);
        (amountA, amountB) = _optimal(pair, tokenA, tokenB, wantA, wantB);
        tokenA.take(msg.sender, pair, amountA);
        tokenB.take(msg.sender, pair, amountB);
        shares = ProductPair(pair).mint(to);
    }

    function _optimal(
        address pair,
        address tokenA,
        address tokenB,
        uint256 wantA,
        uint256 wantB
    ) private view returns (uint256, uint256) {
        (uint256 rA, uint256 rB) = _reserves(pair, tokenA, tokenB);
        if (rA == 0 && rB == 0) return (wantA, wantB);
        uint256 bestB = wantA * rB / rA;
        if (bestB <= wantB) return (wantA, bestB);
        uint256 bestA = wantB * rA / rB;
        require(bestA <= wantA, "ratio");
        return (bestA, wantB);
    }

    function getAmountOut(uint256 amountIn, uint256 reserveIn, uint256 reserveOut)
        public
        pure
        returns (uint256)
    {
        require(amountIn > 0 && reserveIn > 0 && reserveOut > 0, "amount");
        uint256 inWithFee = amountIn * 997;
        return inWithFee * reserveOut / (reserveIn * 1000 + inWithFee);
    }

    function getAmountsOut(uint256 amountIn, address[] memory path)
        public
        view
        returns (uint256[] memory amounts)
    {
        require(path.length >= 2, "path");
        amounts = new uint256[](path.length);
        amounts[0] = amountIn;
        for (uint256 i = 0; i + 1 < path.length; ++i) {
            address pair = factory.getPair(path[i], path[i + 1]);
            require(pair != address(0), "no pair");
            (uint256 rIn, uint256 rOut) = _reserves(pair, path[i], path[i + 1]);
            amounts[i + 1] = getAmountOut(amounts[i], rIn, rOut);
        }
    }

    function swapExactTokensForTokens(
        uint256 amountIn,
        uint256 minOut,
        address[] calldata path,
        address to,
        uint256 deadline
    ) external live(deadline) returns (uint256[] memory amounts) {
        amounts = getAmountsOut(amountIn, path);
        require(amounts[amounts.length - 1] >= minOut, "slippage");
        path[0].take(msg.sender, factory.getPair(path[0], path[1]), amountIn);
        _swapAlong(amounts, path, to);
    }

    function swapExactETHForTokens(uint256 minOut, address[] calldata path, address to, uint256 deadline)
        external
        payable
        live(deadline)
        returns (uint256[] memory amounts)
    {
        require(path[0] == weth, "path");
        amounts = getAmountsOut(msg.value, path);
        require(amounts[amounts.length - 1] >= minOut, "slippage");
        IWrappedEther(weth).deposit{value: msg.value}();
        weth.give(factory.getPair(path[0], path[1]), msg.value);
        _swapAlong(amounts, path, to);
    }

    function swapExactTokensForETH(
        uint256 amountIn,
        uint256 minOut,
        address[] calldata path,
        address to,
        uint256 deadline
    ) external live(deadline) returns (uint256[] memory amounts) {
        require(path[path.length - 1] == weth, "path");
        amounts = getAmountsOut(amountIn, path);
        uint256 out = amounts[amounts.length - 1];
        require(out >= minOut, "slippage");
        path[0].take(msg.sender, factory.getPair(path[0], path[1]), amountIn);
        _swapAlong(amounts, path, address(this));
        IWrappedEther(weth).withdraw(out);
        (bool ok,) = to.call{value: out}("");
        require(ok, "send ether");
    }

    function _swapAlong(uint256[] memory amounts, address[] calldata path, address to) private {
        for (uint256 i = 0; i + 1 < path.length; ++i) {
            (address input, address output) = (path[i], path[i + 1]);
            ProductPair pair = ProductPair(factory.getPair(input, output));
            uint256 out = amounts[i + 1];
            (uint256 out0, uint256 out1) = input < output ? (uint256(0), out) : (out, uint256(0));
            address next = i + 2 < path.length ? factory.getPair(output, path[i + 2]) : to;
            pair.swap(out0, out1, next);
        }
    }

    function _reserves(address pair, address a, address b) private view returns (uint256, uint256) {
        (uint112 r0, uint112 r1,) = ProductPair(pair).getReserves();
        return a < b ? (uint256(r0), uint256(r1)) : (uint256(r1), uint256(r0));
    }
}
