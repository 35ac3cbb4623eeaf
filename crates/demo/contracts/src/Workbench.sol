// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

/// Compute-heavy calls: a hash chain, a prime sieve and fixed-point square roots.
contract Workbench {
    mapping(address => bytes32) public lastResult;
    uint256 public runs;

    event Computed(address indexed caller, uint8 kind, bytes32 result);

    function hashChain(bytes32 seed, uint256 rounds) external returns (bytes32 h) {
        h = seed;
        for (uint256 i = 0; i < rounds; ++i) {
            h = keccak256(abi.encodePacked(h, i));
        }
        _record(1, h);
    }

    function sieve(uint256 limit) external returns (uint256 count) {
        require(limit >= 2 && limit <= 100000, "limit");
        bytes memory composite = new bytes(limit + 1);
        for (uint256 i = 2; i <= limit; ++i) {
            if (composite[i] != 0) continue;
            ++count;
            for (uint256 j = i * i; j <= limit; j += i) {
                composite[j] = 0x01;
            }
        }
        _record(2, bytes32(count));
    }

    /// Sum of sqrt(k) for k in [from, from + n), in 18-decimal fixed point, by Newton's method.
    function rootSum(uint256 from, uint256 n) external returns (uint256 total) {
        for (uint256 k = from; k < from + n; ++k) {
            total += _sqrt(k * 1e36);
        }
        _record(3, bytes32(total));
    }

    function _sqrt(uint256 x) private pure returns (uint256 r) {
        if (x == 0) return 0;
        r = x;
        uint256 next = (x >> 1) + 1;
        while (next < r) {
            r = next;
            next = (x / next + next) >> 1;
        }
    }

    function _record(uint8 kind, bytes32 result) private {
        lastResult[msg.sender] = result;
        unchecked {
            ++runs;
        }
        emit Computed(msg.sender, kind, result);
    }
}
