// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

interface ITokenReceiver721 {
    function onERC721Received(address operator, address from, uint256 id, bytes calldata data)
        external
        returns (bytes4);
}

/// A non-fungible token with an open mint: ids count up from 1.
contract Collectible {
    string public constant name = "Kiln Collectible";
    string public constant symbol = "KILN";

    uint256 public minted;
    mapping(uint256 => address) public ownerOf;
    mapping(address => uint256) public balanceOf;
    mapping(uint256 => address) public getApproved;
    mapping(address => mapping(address => bool)) public isApprovedForAll;
    mapping(uint256 => bytes32) public traits;

    event Transfer(address indexed from, address indexed to, uint256 indexed id);
    event Approval(address indexed owner, address indexed spender, uint256 indexed id);
    event ApprovalForAll(address indexed owner, address indexed operator, bool approved);

    function supportsInterface(bytes4 id) external pure returns (bool) {
        return id == 0x01ffc9a7 || id == 0x80ac58cd;
    }

    function mint(address to) external returns (uint256 id) {
        require(to != address(0), "zero");
        id = ++minted;
        ownerOf[id] = to;
        unchecked {
            balanceOf[to]++;
        }
        traits[id] = keccak256(abi.encodePacked(id, to, block.prevrandao));
        emit Transfer(address(0), to, id);
    }

    function approve(address spender, uint256 id) external {
        address owner = ownerOf[id];
        require(msg.sender == owner || isApprovedForAll[owner][msg.sender], "not allowed");
        getApproved[id] = spender;
        emit Approval(owner, spender, id);
    }

    function setApprovalForAll(address operator, bool approved) external {
        isApprovedForAll[msg.sender][operator] = approved;
        emit ApprovalForAll(msg.sender, operator, approved);
    }

    function transferFrom(address from, address to, uint256 id) public {
        require(from == ownerOf[id], "wrong owner");
        require(to != address(0), "zero");
        require(
            msg.sender == from || isApprovedForAll[from][msg.sender] || msg.sender == getApproved[id],
            "not allowed"
        );
        unchecked {
            balanceOf[from]--;
            balanceOf[to]++;
        }
        ownerOf[id] = to;
        delete getApproved[id];
        emit Transfer(from, to, id);
    }

    function safeTransferFrom(address from, address to, uint256 id) external {
        safeTransferFrom(from, to, id, "");
    }

    function safeTransferFrom(address from, address to, uint256 id, bytes memory data) public {
        transferFrom(from, to, id);
        if (to.code.length != 0) {
            require(
                ITokenReceiver721(to).onERC721Received(msg.sender, from, id, data)
                    == ITokenReceiver721.onERC721Received.selector,
                "unsafe receiver"
            );
        }
    }
}
