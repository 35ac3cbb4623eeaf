//! The demo's contracts: the committed solc artifacts embedded in the binary, and typed ABI
//! bindings for the calls the transaction mix makes.
//!
//! Sources and the script that regenerates the artifacts are in `crates/demo/contracts`.

use alloy_primitives::{keccak256, Bytes, B256};
use std::sync::OnceLock;

/// One of the demo's contracts, as compiled into `contracts/artifacts/<Name>.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Contract {
    /// ERC-20 with a minter (`src/Token.sol`).
    DemoToken,
    /// WETH-style wrapper (`src/WrappedEther.sol`).
    WrappedEther,
    /// Constant-product pair factory (`src/Amm.sol`).
    PairFactory,
    /// Constant-product pair (`src/Amm.sol`), created by the factory.
    ProductPair,
    /// Router over constant-product pairs (`src/Amm.sol`).
    PairRouter,
    /// Concentrated-liquidity pool factory (`src/Concentrated.sol`).
    TickPoolFactory,
    /// Concentrated-liquidity pool (`src/Concentrated.sol`), created by the factory with immutables.
    TickPool,
    /// Periphery of the concentrated pools (`src/Concentrated.sol`).
    TickRouter,
    /// ERC-721 with an open mint (`src/Collectible.sol`).
    Collectible,
    /// Compute-heavy calls (`src/Workbench.sol`).
    Workbench,
}

/// What the build script writes for one contract.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Contract name.
    pub contract_name: String,
    /// Source file, relative to `crates/demo/contracts`.
    pub source_name: String,
    /// Compiler that produced it.
    pub compiler: String,
    /// JSON ABI.
    pub abi: serde_json::Value,
    /// Creation (init) code, without constructor arguments.
    pub bytecode: Bytes,
    /// Runtime code as the compiler emits it (immutables still zero).
    pub deployed_bytecode: Bytes,
}

impl Contract {
    /// Every contract, in a fixed order.
    pub const ALL: [Contract; 10] = [
        Contract::DemoToken,
        Contract::WrappedEther,
        Contract::PairFactory,
        Contract::ProductPair,
        Contract::PairRouter,
        Contract::TickPoolFactory,
        Contract::TickPool,
        Contract::TickRouter,
        Contract::Collectible,
        Contract::Workbench,
    ];

    /// The contract's name in the sources.
    pub const fn name(self) -> &'static str {
        match self {
            Contract::DemoToken => "DemoToken",
            Contract::WrappedEther => "WrappedEther",
            Contract::PairFactory => "PairFactory",
            Contract::ProductPair => "ProductPair",
            Contract::PairRouter => "PairRouter",
            Contract::TickPoolFactory => "TickPoolFactory",
            Contract::TickPool => "TickPool",
            Contract::TickRouter => "TickRouter",
            Contract::Collectible => "Collectible",
            Contract::Workbench => "Workbench",
        }
    }

    /// The artifact's JSON text, embedded at build time.
    pub const fn json(self) -> &'static str {
        match self {
            Contract::DemoToken => include_str!("../contracts/artifacts/DemoToken.json"),
            Contract::WrappedEther => include_str!("../contracts/artifacts/WrappedEther.json"),
            Contract::PairFactory => include_str!("../contracts/artifacts/PairFactory.json"),
            Contract::ProductPair => include_str!("../contracts/artifacts/ProductPair.json"),
            Contract::PairRouter => include_str!("../contracts/artifacts/PairRouter.json"),
            Contract::TickPoolFactory => {
                include_str!("../contracts/artifacts/TickPoolFactory.json")
            }
            Contract::TickPool => include_str!("../contracts/artifacts/TickPool.json"),
            Contract::TickRouter => include_str!("../contracts/artifacts/TickRouter.json"),
            Contract::Collectible => include_str!("../contracts/artifacts/Collectible.json"),
            Contract::Workbench => include_str!("../contracts/artifacts/Workbench.json"),
        }
    }

    /// The parsed artifact (parsed once).
    pub fn artifact(self) -> &'static Artifact {
        static PARSED: OnceLock<Vec<Artifact>> = OnceLock::new();
        let all = PARSED.get_or_init(|| {
            Contract::ALL
                .iter()
                .map(|c| serde_json::from_str(c.json()).expect("embedded artifact is valid JSON"))
                .collect()
        });
        &all[self as usize]
    }

    /// Creation code without constructor arguments.
    pub fn creation_code(self) -> &'static Bytes {
        &self.artifact().bytecode
    }

    /// Runtime code as compiled (immutables zeroed; deployed code fills them in).
    pub fn runtime_code(self) -> &'static Bytes {
        &self.artifact().deployed_bytecode
    }

    /// keccak256 of the creation code (the CREATE2 init-code hash when there are no arguments).
    pub fn creation_code_hash(self) -> B256 {
        keccak256(self.creation_code())
    }
}

alloy_sol_types::sol! {
    /// ERC-20 calls (DemoToken, WrappedEther).
    interface IDemoToken {
        function mint(address to, uint256 amount) external;
        function approve(address spender, uint256 amount) external returns (bool);
        function transfer(address to, uint256 amount) external returns (bool);
        function transferFrom(address from, address to, uint256 amount) external returns (bool);
        function balanceOf(address account) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
        function totalSupply() external view returns (uint256);
    }

    /// The wrapper's own calls.
    interface IWrappedEther {
        function deposit() external payable;
        function withdraw(uint256 amount) external;
    }

    /// Constant-product pair factory.
    interface IPairFactory {
        function getPair(address a, address b) external view returns (address);
        function createPair(address a, address b) external returns (address pair);
        function allPairsLength() external view returns (uint256);
    }

    /// Constant-product pair.
    interface IProductPair {
        function getReserves() external view returns (uint112 reserve0, uint112 reserve1, uint32 lastUpdate);
        function token0() external view returns (address);
        function token1() external view returns (address);
        function sync() external;
    }

    /// Router over constant-product pairs.
    interface IPairRouter {
        function addLiquidity(address tokenA, address tokenB, uint256 wantA, uint256 wantB, address to, uint256 deadline)
            external returns (uint256 amountA, uint256 amountB, uint256 shares);
        function swapExactTokensForTokens(uint256 amountIn, uint256 minOut, address[] path, address to, uint256 deadline)
            external returns (uint256[] amounts);
        function swapExactETHForTokens(uint256 minOut, address[] path, address to, uint256 deadline)
            external payable returns (uint256[] amounts);
        function swapExactTokensForETH(uint256 amountIn, uint256 minOut, address[] path, address to, uint256 deadline)
            external returns (uint256[] amounts);
        function getAmountsOut(uint256 amountIn, address[] path) external view returns (uint256[] amounts);
    }

    /// Concentrated-liquidity pool factory.
    interface ITickPoolFactory {
        function createPool(address a, address b, uint24 fee) external returns (address pool);
        function getPool(address a, address b, uint24 fee) external view returns (address);
    }

    /// Concentrated-liquidity pool.
    interface ITickPool {
        function initialize(uint160 price) external;
        function slot0() external view returns (uint160 price, int24 tick, bool unlocked);
        function liquidity() external view returns (uint128);
        function burn(int24 lower, int24 upper, uint128 amount) external returns (uint256 amount0, uint256 amount1);
        function positions(bytes32 key) external view returns (uint128);
    }

    /// Periphery of the concentrated pools.
    interface ITickRouter {
        function addPosition(address tokenA, address tokenB, uint24 fee, int24 lower, int24 upper, uint128 amount, uint256 deadline)
            external returns (uint256 amount0, uint256 amount1);
        function exactInputSingle(address tokenIn, address tokenOut, uint24 fee, uint256 amountIn, uint256 minOut, address to, uint256 deadline)
            external returns (uint256 amountOut);
        function exactInput(address[] tokens, uint24[] fees, uint256 amountIn, uint256 minOut, address to, uint256 deadline)
            external returns (uint256 amountOut);
    }

    /// ERC-721 collectible.
    interface ICollectible {
        function mint(address to) external returns (uint256 id);
        function transferFrom(address from, address to, uint256 id) external;
        function safeTransferFrom(address from, address to, uint256 id) external;
        function ownerOf(uint256 id) external view returns (address);
        function minted() external view returns (uint256);
    }

    /// Compute-heavy calls.
    interface IWorkbench {
        function hashChain(bytes32 seed, uint256 rounds) external returns (bytes32 h);
        function sieve(uint256 limit) external returns (uint256 count);
        function rootSum(uint256 from, uint256 n) external returns (uint256 total);
        function runs() external view returns (uint256);
    }

    /// Constructor arguments of PairRouter.
    struct PairRouterArgs { address factory; address weth; }
    /// Constructor arguments of TickPool (encoded by its factory).
    struct TickPoolArgs { address token0; address token1; uint24 fee; int24 spacing; }
}
