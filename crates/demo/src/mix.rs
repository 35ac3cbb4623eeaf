//! The demo chain's accounts, genesis and transactions: a deterministic, seeded generator.
//!
//! Account 0 deploys everything and provides liquidity; the other accounts are users whose
//! transactions make up the blocks after the setup. The generator tracks nonces, WETH balances,
//! allowances, NFT owners and concentrated positions itself, so every transaction it signs
//! succeeds when the blocks are executed in order.

use crate::contracts::{
    Contract, ICollectible, IDemoToken, IPairRouter, ITickPool, ITickPoolFactory, ITickRouter,
    IWorkbench, IWrappedEther, PairRouterArgs, TickPoolArgs,
};
use alloy_consensus::{SignableTransaction, Transaction, TxEip1559, TxEnvelope};
use alloy_eips::eip4788::{BEACON_ROOTS_ADDRESS, BEACON_ROOTS_CODE};
use alloy_genesis::{ChainConfig, Genesis, GenesisAccount};
use alloy_primitives::{
    aliases::{I24, U160, U24},
    keccak256, Address, Bytes, TxKind, B256, U256,
};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{SolCall, SolValue};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Chain id of the demo chain.
pub const CHAIN_ID: u64 = 1337;
/// Block gas limit the generator plans for.
pub const BLOCK_GAS_LIMIT: u64 = 30_000_000;
/// Base fee of the genesis block (1 gwei).
pub const GENESIS_BASE_FEE: u64 = 1_000_000_000;
/// Timestamp of the genesis block.
pub const GENESIS_TIMESTAMP: u64 = 1_700_000_000;
/// Priority fee every transaction offers (0.1 gwei).
pub const PRIORITY_FEE: u128 = 100_000_000;
/// Max fee per gas of the setup transactions (100 gwei), whatever the base fee then is.
pub const SETUP_MAX_FEE: u128 = 100_000_000_000;

const ETHER: u128 = 1_000_000_000_000_000_000;
const DEPLOYER_ETH: u128 = 1_000_000_000 * ETHER;
const USER_ETH: u128 = 1_000_000 * ETHER;
const DEPLOYER_TOKENS: u128 = 1_000_000_000_000 * ETHER;
const USER_TOKENS: u128 = 1_000_000_000 * ETHER;
const USER_WETH: u128 = 1_000 * ETHER;
const PAIR_DEPTH: u128 = 1_000_000 * ETHER;
const FULL_RANGE_LIQUIDITY: u128 = 100_000 * ETHER;
const NARROW_LIQUIDITY: u128 = 50_000 * ETHER;
const USER_POSITION_LIQUIDITY: u128 = 1_000 * ETHER;
const POOL_DRIFT_LIMIT: i128 = 10_000 * ETHER as i128;
/// sqrt(1) in Q64.96: every pool starts at price 1.
const PRICE_ONE: u128 = 1 << 96;
const MIN_TICK: i32 = -887_272;
const MAX_TICK: i32 = 887_272;

/// What a transaction does, for reports and failure messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxKindLabel {
    /// Contract deployment during setup.
    Deploy,
    /// Token mint during setup.
    Mint,
    /// Any other setup call (approvals, liquidity, pools, positions).
    Setup,
    /// ERC-20 transfer.
    TokenTransfer,
    /// ERC-20 approve.
    TokenApprove,
    /// ERC-20 transferFrom by a spender.
    TokenTransferFrom,
    /// Plain ether transfer.
    EtherTransfer,
    /// WETH deposit.
    WethDeposit,
    /// WETH withdraw.
    WethWithdraw,
    /// Constant-product swap over one pair.
    AmmSwap,
    /// Constant-product swap over two or three pairs.
    AmmMultiHop,
    /// Ether in, tokens out through the router.
    AmmEthIn,
    /// Tokens in, ether out through the router.
    AmmEthOut,
    /// Concentrated-pool swap over one pool.
    PoolSwap,
    /// Concentrated-pool swap over two pools.
    PoolMultiHop,
    /// New concentrated position.
    PoolMint,
    /// Removal of a concentrated position.
    PoolBurn,
    /// NFT mint.
    NftMint,
    /// NFT transfer.
    NftTransfer,
    /// Compute-heavy call.
    Compute,
}

impl TxKindLabel {
    /// Short name of the kind.
    pub const fn name(self) -> &'static str {
        match self {
            TxKindLabel::Deploy => "deploy",
            TxKindLabel::Mint => "mint",
            TxKindLabel::Setup => "setup",
            TxKindLabel::TokenTransfer => "erc20 transfer",
            TxKindLabel::TokenApprove => "erc20 approve",
            TxKindLabel::TokenTransferFrom => "erc20 transferFrom",
            TxKindLabel::EtherTransfer => "ether transfer",
            TxKindLabel::WethDeposit => "weth deposit",
            TxKindLabel::WethWithdraw => "weth withdraw",
            TxKindLabel::AmmSwap => "amm swap",
            TxKindLabel::AmmMultiHop => "amm multi-hop swap",
            TxKindLabel::AmmEthIn => "amm ether-in swap",
            TxKindLabel::AmmEthOut => "amm ether-out swap",
            TxKindLabel::PoolSwap => "pool swap",
            TxKindLabel::PoolMultiHop => "pool multi-hop swap",
            TxKindLabel::PoolMint => "pool add position",
            TxKindLabel::PoolBurn => "pool burn position",
            TxKindLabel::NftMint => "nft mint",
            TxKindLabel::NftTransfer => "nft transfer",
            TxKindLabel::Compute => "compute",
        }
    }

    /// The gas limit the generator gives transactions of this kind (setup calls other than
    /// approvals, mints and deposits get limits of their own).
    pub const fn gas_limit(self) -> u64 {
        match self {
            TxKindLabel::Deploy => 6_000_000,
            TxKindLabel::Mint => 100_000,
            TxKindLabel::Setup => 100_000,
            TxKindLabel::TokenTransfer => 80_000,
            TxKindLabel::TokenApprove => 60_000,
            TxKindLabel::TokenTransferFrom => 90_000,
            TxKindLabel::EtherTransfer => 21_000,
            TxKindLabel::WethDeposit => 70_000,
            TxKindLabel::WethWithdraw => 70_000,
            TxKindLabel::AmmSwap => 250_000,
            TxKindLabel::AmmMultiHop => 500_000,
            TxKindLabel::AmmEthIn => 300_000,
            TxKindLabel::AmmEthOut => 300_000,
            TxKindLabel::PoolSwap => 1_200_000,
            TxKindLabel::PoolMultiHop => 2_000_000,
            TxKindLabel::PoolMint => 600_000,
            TxKindLabel::PoolBurn => 400_000,
            TxKindLabel::NftMint => 150_000,
            TxKindLabel::NftTransfer => 100_000,
            TxKindLabel::Compute => 2_000_000,
        }
    }
}

/// A signed transaction with what the generator knows about it.
#[derive(Clone, Debug)]
pub struct DemoTx {
    /// The signed transaction.
    pub envelope: TxEnvelope,
    /// Its sender.
    pub sender: Address,
    /// What it does.
    pub kind: TxKindLabel,
    /// A human-readable description (contract and call).
    pub what: String,
}

/// A constant-product pair of the demo.
#[derive(Clone, Copy, Debug)]
pub struct PairInfo {
    /// Pair address (CREATE2 from the pair factory).
    pub address: Address,
    /// First token (the lower address).
    pub token0: Address,
    /// Second token.
    pub token1: Address,
}

/// A concentrated-liquidity pool of the demo.
#[derive(Clone, Copy, Debug)]
pub struct PoolInfo {
    /// Pool address (CREATE2 from the pool factory).
    pub address: Address,
    /// First token (the lower address).
    pub token0: Address,
    /// Second token.
    pub token1: Address,
    /// Fee in hundredths of a basis point.
    pub fee: u32,
    /// Tick spacing.
    pub spacing: i32,
    /// Report label.
    pub label: &'static str,
}

/// Addresses of everything the setup deploys.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// The four ERC-20 tokens A, B, C, D.
    pub tokens: [Address; 4],
    /// The WETH-style wrapper.
    pub weth: Address,
    /// The ERC-721 collectible.
    pub nft: Address,
    /// The compute-heavy contract.
    pub workbench: Address,
    /// Constant-product pair factory.
    pub pair_factory: Address,
    /// Constant-product router.
    pub pair_router: Address,
    /// Concentrated pool factory.
    pub pool_factory: Address,
    /// Concentrated pool router.
    pub pool_router: Address,
    /// The constant-product pairs the setup seeds.
    pub pairs: Vec<PairInfo>,
    /// The concentrated pools the setup creates.
    pub pools: Vec<PoolInfo>,
}

const TOKEN_NAMES: [(&str, &str, &str); 4] = [
    ("Token A", "TKA", "DemoToken A"),
    ("Token B", "TKB", "DemoToken B"),
    ("Token C", "TKC", "DemoToken C"),
    ("Token D", "TKD", "DemoToken D"),
];

/// Token indices of the pairs; 4 stands for WETH.
const PAIRS: [(usize, usize, &str); 6] = [
    (0, 1, "ProductPair A/B"),
    (1, 2, "ProductPair B/C"),
    (2, 3, "ProductPair C/D"),
    (0, 3, "ProductPair A/D"),
    (4, 0, "ProductPair WETH/A"),
    (4, 2, "ProductPair WETH/C"),
];

/// Token indices, fee and label of the concentrated pools: the first [`HOT_POOLS`] carry most
/// of the swaps, the rest are the long tail every DEX has (pools of the same code family that
/// see a swap now and then).
const POOLS: [(usize, usize, u32, &str); 13] = [
    (0, 1, 3000, "TickPool A/B 0.3%"),
    (1, 2, 3000, "TickPool B/C 0.3%"),
    (0, 3, 3000, "TickPool A/D 0.3%"),
    (0, 2, 500, "TickPool A/C 0.05%"),
    (2, 3, 10000, "TickPool C/D 1%"),
    (0, 1, 500, "TickPool A/B 0.05%"),
    (0, 1, 10000, "TickPool A/B 1%"),
    (1, 2, 500, "TickPool B/C 0.05%"),
    (0, 3, 10000, "TickPool A/D 1%"),
    (0, 2, 3000, "TickPool A/C 0.3%"),
    (2, 3, 3000, "TickPool C/D 0.3%"),
    (1, 3, 3000, "TickPool B/D 0.3%"),
    (1, 3, 500, "TickPool B/D 0.05%"),
];

/// How many of the demo's concentrated pools (the first ones created) carry most swaps.
pub const HOT_POOLS: usize = 5;

/// Percent of single-pool swaps that go to a pool of the long tail.
const TAIL_SWAP_PERCENT: u32 = 5;

const fn spacing_of(fee: u32) -> i32 {
    match fee {
        500 => 10,
        3000 => 60,
        _ => 200,
    }
}

#[derive(Clone, Debug)]
struct Account {
    signer: PrivateKeySigner,
    address: Address,
    nonce: u64,
}

#[derive(Clone, Copy, Debug)]
struct UserPosition {
    owner: usize,
    pool: usize,
    lower: i32,
    upper: i32,
}

/// The demo chain's generator: accounts, genesis, setup and the blocks after it.
///
/// Cloning it forks the generator: a clone can produce a side branch's blocks while the original
/// goes on with the canonical ones.
#[derive(Clone, Debug)]
pub struct DemoChain {
    seed: u64,
    rng: ChaCha8Rng,
    accounts: Vec<Account>,
    deployment: Deployment,
    setup_done: bool,
    /// Lower bound of each account's WETH balance.
    weth: Vec<u128>,
    /// (token index, owner, spender) -> allowance still unspent, for transferFrom.
    allowances: BTreeMap<(usize, usize, usize), u128>,
    /// Owner (account index) of NFT id i + 1.
    nft_owners: Vec<usize>,
    /// Net token0 pushed into each pool (token0 in minus token1 in): steers swap directions.
    pool_drift: Vec<i128>,
    user_positions: Vec<UserPosition>,
}

fn derive_key(seed: u64, index: u64) -> PrivateKeySigner {
    let mut counter = 0u64;
    loop {
        let material = [
            b"kiln-demo-account".as_slice(),
            &seed.to_be_bytes(),
            &index.to_be_bytes(),
            &counter.to_be_bytes(),
        ]
        .concat();
        if let Ok(signer) = PrivateKeySigner::from_bytes(&keccak256(material)) {
            return signer;
        }
        counter += 1;
    }
}

fn word(bytes: &[u8]) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[32 - bytes.len()..].copy_from_slice(bytes);
    w
}

fn u24(v: u32) -> U24 {
    U24::from(v)
}

fn i24(v: i32) -> I24 {
    I24::try_from(v).expect("tick fits in int24")
}

/// The pool factory's CREATE2 salt: keccak256(abi.encode(token0, token1, fee)).
fn pool_salt(token0: Address, token1: Address, fee: u32) -> B256 {
    let mut buf = Vec::with_capacity(96);
    buf.extend_from_slice(&word(token0.as_slice()));
    buf.extend_from_slice(&word(token1.as_slice()));
    buf.extend_from_slice(&word(&fee.to_be_bytes()));
    keccak256(buf)
}

fn sorted(a: Address, b: Address) -> (Address, Address) {
    if a < b {
        (a, b)
    } else {
        (b, a)
    }
}

impl DemoChain {
    /// A generator for `accounts` funded accounts (at least 3: a deployer and two users), with
    /// keys and every random choice derived from `seed`.
    pub fn new(seed: u64, accounts: usize) -> Self {
        assert!(
            accounts >= 3,
            "the demo needs a deployer and at least two users"
        );
        let accounts: Vec<Account> = (0..accounts as u64)
            .map(|i| {
                let signer = derive_key(seed, i);
                Account {
                    address: signer.address(),
                    signer,
                    nonce: 0,
                }
            })
            .collect();
        let deployer = accounts[0].address;
        let at = |nonce: u64| deployer.create(nonce);
        let tokens = [at(0), at(1), at(2), at(3)];
        let weth = at(4);
        let nft = at(5);
        let workbench = at(6);
        let pair_factory = at(7);
        let pair_router = at(8);
        let pool_factory = at(9);
        let pool_router = at(10);
        let token_at = |i: usize| if i == 4 { weth } else { tokens[i] };
        let pair_init_hash = Contract::ProductPair.creation_code_hash();
        let pairs = PAIRS
            .iter()
            .map(|&(a, b, _)| {
                let (token0, token1) = sorted(token_at(a), token_at(b));
                let salt = keccak256([token0.as_slice(), token1.as_slice()].concat());
                PairInfo {
                    address: pair_factory.create2(salt, pair_init_hash),
                    token0,
                    token1,
                }
            })
            .collect();
        let pools = POOLS
            .iter()
            .map(|&(a, b, fee, label)| {
                let (token0, token1) = sorted(tokens[a], tokens[b]);
                let spacing = spacing_of(fee);
                let args = TickPoolArgs {
                    token0,
                    token1,
                    fee: u24(fee),
                    spacing: i24(spacing),
                };
                let init = [
                    Contract::TickPool.creation_code().as_ref(),
                    &args.abi_encode(),
                ]
                .concat();
                let address = pool_factory.create2(pool_salt(token0, token1, fee), keccak256(init));
                PoolInfo {
                    address,
                    token0,
                    token1,
                    fee,
                    spacing,
                    label,
                }
            })
            .collect();
        let deployment = Deployment {
            tokens,
            weth,
            nft,
            workbench,
            pair_factory,
            pair_router,
            pool_factory,
            pool_router,
            pairs,
            pools,
        };
        let n = accounts.len();
        DemoChain {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            accounts,
            deployment,
            setup_done: false,
            weth: vec![0; n],
            allowances: BTreeMap::new(),
            nft_owners: Vec::new(),
            pool_drift: vec![0; POOLS.len()],
            user_positions: Vec::new(),
        }
    }

    /// The seed the generator was made with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Addresses of every funded account (index 0 is the deployer).
    pub fn addresses(&self) -> Vec<Address> {
        self.accounts.iter().map(|a| a.address).collect()
    }

    /// Addresses of everything the setup deploys (known before it runs).
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// The genesis: chain id 1337, every fork through Cancun active from genesis, the funded
    /// accounts and the EIP-4788 beacon roots contract.
    pub fn genesis(&self) -> Genesis {
        let config = ChainConfig {
            chain_id: CHAIN_ID,
            homestead_block: Some(0),
            eip150_block: Some(0),
            eip155_block: Some(0),
            eip158_block: Some(0),
            byzantium_block: Some(0),
            constantinople_block: Some(0),
            petersburg_block: Some(0),
            istanbul_block: Some(0),
            muir_glacier_block: Some(0),
            berlin_block: Some(0),
            london_block: Some(0),
            arrow_glacier_block: Some(0),
            gray_glacier_block: Some(0),
            merge_netsplit_block: Some(0),
            shanghai_time: Some(0),
            cancun_time: Some(0),
            terminal_total_difficulty: Some(U256::ZERO),
            terminal_total_difficulty_passed: true,
            ..Default::default()
        };
        let mut alloc = BTreeMap::new();
        for (i, account) in self.accounts.iter().enumerate() {
            let balance = if i == 0 { DEPLOYER_ETH } else { USER_ETH };
            alloc.insert(
                account.address,
                GenesisAccount {
                    balance: U256::from(balance),
                    ..Default::default()
                },
            );
        }
        alloc.insert(
            BEACON_ROOTS_ADDRESS,
            GenesisAccount {
                nonce: Some(1),
                code: Some(BEACON_ROOTS_CODE.clone()),
                ..Default::default()
            },
        );
        Genesis {
            config,
            nonce: 0,
            timestamp: GENESIS_TIMESTAMP,
            extra_data: Bytes::from_static(b"kiln demo"),
            gas_limit: BLOCK_GAS_LIMIT,
            difficulty: U256::ZERO,
            alloc,
            base_fee_per_gas: Some(GENESIS_BASE_FEE as u128),
            excess_blob_gas: Some(0),
            blob_gas_used: Some(0),
            ..Default::default()
        }
    }

    /// Every contract address with a label for reports: the setup's contracts, pairs and pools,
    /// and the beacon roots system contract.
    pub fn contract_names(&self) -> Vec<(Address, &'static str)> {
        let d = &self.deployment;
        let mut names = vec![(BEACON_ROOTS_ADDRESS, "BeaconRoots (EIP-4788)")];
        for (i, t) in d.tokens.iter().enumerate() {
            names.push((*t, TOKEN_NAMES[i].2));
        }
        names.extend([
            (d.weth, "WrappedEther"),
            (d.nft, "Collectible"),
            (d.workbench, "Workbench"),
            (d.pair_factory, "PairFactory"),
            (d.pair_router, "PairRouter"),
            (d.pool_factory, "TickPoolFactory"),
            (d.pool_router, "TickRouter"),
        ]);
        for (p, &(_, _, label)) in d.pairs.iter().zip(PAIRS.iter()) {
            names.push((p.address, label));
        }
        for p in &d.pools {
            names.push((p.address, p.label));
        }
        names
    }

    #[allow(clippy::too_many_arguments)]
    fn sign(
        &mut self,
        from: usize,
        to: TxKind,
        value: u128,
        input: Vec<u8>,
        kind: TxKindLabel,
        what: String,
        max_fee: u128,
        gas_limit: u64,
    ) -> DemoTx {
        let account = &mut self.accounts[from];
        let tx = TxEip1559 {
            chain_id: CHAIN_ID,
            nonce: account.nonce,
            gas_limit,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: PRIORITY_FEE,
            to,
            value: U256::from(value),
            access_list: Default::default(),
            input: input.into(),
        };
        account.nonce += 1;
        let signature = account
            .signer
            .sign_hash_sync(&tx.signature_hash())
            .expect("signing with a local key cannot fail");
        DemoTx {
            envelope: tx.into_signed(signature).into(),
            sender: account.address,
            kind,
            what,
        }
    }

    fn deploy(&mut self, contract: Contract, args: Vec<u8>, what: &str) -> DemoTx {
        let code = [contract.creation_code().as_ref(), &args].concat();
        self.sign(
            0,
            TxKind::Create,
            0,
            code,
            TxKindLabel::Deploy,
            format!("deploy {what}"),
            SETUP_MAX_FEE,
            TxKindLabel::Deploy.gas_limit(),
        )
    }

    /// A setup call; the gas limit is the kind's unless `what` names a heavier call.
    fn setup_call(
        &mut self,
        from: usize,
        to: Address,
        value: u128,
        input: Vec<u8>,
        kind: TxKindLabel,
        what: String,
    ) -> DemoTx {
        let gas_limit = if kind != TxKindLabel::Setup {
            kind.gas_limit()
        } else if what.starts_with("TickPoolFactory.createPool") {
            3_500_000
        } else if what.starts_with("PairRouter.addLiquidity") {
            3_000_000
        } else if what.starts_with("TickRouter.addPosition") {
            600_000
        } else if what.ends_with(".initialize") {
            200_000
        } else {
            100_000
        };
        self.sign(
            from,
            TxKind::Call(to),
            value,
            input,
            kind,
            what,
            SETUP_MAX_FEE,
            gas_limit,
        )
    }

    /// The setup phase in order, each transaction labelled: deployments, mints, approvals,
    /// constant-product liquidity, concentrated pools and their positions.
    pub fn setup_transactions(&mut self) -> Vec<DemoTx> {
        assert!(!self.setup_done, "setup transactions are generated once");
        self.setup_done = true;
        let d = self.deployment.clone();
        let mut txs = Vec::new();
        for (name, symbol, label) in TOKEN_NAMES {
            let args = (name.to_string(), symbol.to_string()).abi_encode_params();
            txs.push(self.deploy(Contract::DemoToken, args, label));
        }
        txs.push(self.deploy(Contract::WrappedEther, vec![], "WrappedEther"));
        txs.push(self.deploy(Contract::Collectible, vec![], "Collectible"));
        txs.push(self.deploy(Contract::Workbench, vec![], "Workbench"));
        txs.push(self.deploy(Contract::PairFactory, vec![], "PairFactory"));
        let router_args = PairRouterArgs {
            factory: d.pair_factory,
            weth: d.weth,
        }
        .abi_encode();
        txs.push(self.deploy(Contract::PairRouter, router_args, "PairRouter"));
        txs.push(self.deploy(Contract::TickPoolFactory, vec![], "TickPoolFactory"));
        txs.push(self.deploy(
            Contract::TickRouter,
            d.pool_factory.abi_encode(),
            "TickRouter",
        ));
        debug_assert_eq!(self.accounts[0].nonce, 11);

        // Tokens for everyone, WETH for everyone, approvals of both routers.
        for i in 0..self.accounts.len() {
            let to = self.accounts[i].address;
            let amount = if i == 0 { DEPLOYER_TOKENS } else { USER_TOKENS };
            for (t, &token) in d.tokens.iter().enumerate() {
                let input = IDemoToken::mintCall {
                    to,
                    amount: U256::from(amount),
                }
                .abi_encode();
                let what = format!("{}.mint(account {i})", TOKEN_NAMES[t].2);
                txs.push(self.setup_call(0, token, 0, input, TxKindLabel::Mint, what));
            }
        }
        for i in 0..self.accounts.len() {
            let wrap = if i == 0 { 10 * PAIR_DEPTH } else { USER_WETH };
            let input = IWrappedEther::depositCall {}.abi_encode();
            txs.push(self.setup_call(
                i,
                d.weth,
                wrap,
                input,
                TxKindLabel::Setup,
                "WrappedEther.deposit".into(),
            ));
            self.weth[i] += wrap;
            let spenders = [(d.pair_router, "PairRouter"), (d.pool_router, "TickRouter")];
            for (spender, spender_name) in spenders {
                for (t, &token) in d.tokens.iter().enumerate() {
                    let input = IDemoToken::approveCall {
                        spender,
                        amount: U256::MAX,
                    }
                    .abi_encode();
                    let what = format!("{}.approve({spender_name})", TOKEN_NAMES[t].2);
                    txs.push(self.setup_call(i, token, 0, input, TxKindLabel::Setup, what));
                }
            }
            let input = IDemoToken::approveCall {
                spender: d.pair_router,
                amount: U256::MAX,
            }
            .abi_encode();
            let what = "WrappedEther.approve(PairRouter)".to_string();
            txs.push(self.setup_call(i, d.weth, 0, input, TxKindLabel::Setup, what));
        }

        // Constant-product liquidity (the router creates each pair).
        for (idx, &(a, b, label)) in PAIRS.iter().enumerate() {
            let token_a = if a == 4 { d.weth } else { d.tokens[a] };
            let token_b = d.tokens[b];
            let input = IPairRouter::addLiquidityCall {
                tokenA: token_a,
                tokenB: token_b,
                wantA: U256::from(PAIR_DEPTH),
                wantB: U256::from(PAIR_DEPTH + PAIR_DEPTH / 10 * idx as u128),
                to: self.accounts[0].address,
                deadline: U256::MAX,
            }
            .abi_encode();
            let what = format!("PairRouter.addLiquidity({label})");
            txs.push(self.setup_call(0, d.pair_router, 0, input, TxKindLabel::Setup, what));
        }
        self.weth[0] -= PAIR_DEPTH * 2;

        // Concentrated pools, initialised at price 1, with a full-range position and nested
        // and one-sided narrow ones so that swaps cross initialised ticks.
        for pool in d.pools.clone() {
            let input = ITickPoolFactory::createPoolCall {
                a: pool.token1,
                b: pool.token0,
                fee: u24(pool.fee),
            }
            .abi_encode();
            let what = format!("TickPoolFactory.createPool({})", pool.label);
            txs.push(self.setup_call(0, d.pool_factory, 0, input, TxKindLabel::Setup, what));
            let input = ITickPool::initializeCall {
                price: U160::from(PRICE_ONE),
            }
            .abi_encode();
            let what = format!("{}.initialize", pool.label);
            txs.push(self.setup_call(0, pool.address, 0, input, TxKindLabel::Setup, what));
            let s = pool.spacing;
            let mut ranges = vec![((MIN_TICK / s) * s, (MAX_TICK / s) * s, FULL_RANGE_LIQUIDITY)];
            for k in 1..=12 {
                ranges.push((-2 * k * s, 2 * k * s, NARROW_LIQUIDITY));
            }
            for k in 1..=4 {
                ranges.push((3 * k * s, 3 * k * s + 10 * s, NARROW_LIQUIDITY));
                ranges.push((-3 * k * s - 10 * s, -3 * k * s, NARROW_LIQUIDITY));
            }
            for (lower, upper, amount) in ranges {
                let input = ITickRouter::addPositionCall {
                    tokenA: pool.token0,
                    tokenB: pool.token1,
                    fee: u24(pool.fee),
                    lower: i24(lower),
                    upper: i24(upper),
                    amount,
                    deadline: U256::MAX,
                }
                .abi_encode();
                let what = format!("TickRouter.addPosition({} [{lower}, {upper}))", pool.label);
                txs.push(self.setup_call(0, d.pool_router, 0, input, TxKindLabel::Setup, what));
            }
        }
        txs
    }

    /// The setup phase cut into blocks whose gas limits add up to at most 30M.
    pub fn setup_blocks(&mut self) -> Vec<Vec<TxEnvelope>> {
        self.setup_blocks_labeled()
            .into_iter()
            .map(|block| block.into_iter().map(|t| t.envelope).collect())
            .collect()
    }

    /// [`DemoChain::setup_blocks`] with each transaction's sender, kind and description.
    pub fn setup_blocks_labeled(&mut self) -> Vec<Vec<DemoTx>> {
        let mut blocks: Vec<Vec<DemoTx>> = Vec::new();
        let mut gas = BLOCK_GAS_LIMIT;
        for tx in self.setup_transactions() {
            let limit = tx.envelope.gas_limit();
            if gas + limit > BLOCK_GAS_LIMIT {
                blocks.push(Vec::new());
                gas = 0;
            }
            gas += limit;
            blocks.last_mut().expect("a block was opened").push(tx);
        }
        blocks
    }

    /// The next block's transactions (after the setup): up to `n_txs` signed EIP-1559
    /// transactions, fewer when their gas limits would pass 30M, each paying at most twice
    /// `base_fee` plus the priority fee.
    pub fn next_block(&mut self, n_txs: usize, base_fee: u64) -> Vec<TxEnvelope> {
        self.next_block_labeled(n_txs, base_fee)
            .into_iter()
            .map(|t| t.envelope)
            .collect()
    }

    /// [`DemoChain::next_block`] with each transaction's sender, kind and description.
    pub fn next_block_labeled(&mut self, n_txs: usize, base_fee: u64) -> Vec<DemoTx> {
        assert!(self.setup_done, "generate the setup first");
        let max_fee = 2 * base_fee as u128 + PRIORITY_FEE;
        let mut txs = Vec::with_capacity(n_txs);
        let mut gas = 0u64;
        while txs.len() < n_txs {
            let tx = self.random_tx(max_fee);
            gas += tx.kind.gas_limit();
            txs.push(tx);
            // Leave room for the largest kind so that the next transaction always fits.
            if gas + TxKindLabel::Compute.gas_limit() > BLOCK_GAS_LIMIT {
                break;
            }
        }
        txs
    }

    fn user(&mut self) -> usize {
        self.rng.random_range(1..self.accounts.len())
    }

    fn other_user(&mut self, not: usize) -> usize {
        loop {
            let u = self.user();
            if u != not {
                return u;
            }
        }
    }

    /// A roughly log-uniform amount in [lo, hi]: a random power-of-two multiple of `lo` with a
    /// random mantissa (integer arithmetic only, so every platform draws the same amounts).
    fn amount(&mut self, lo: u128, hi: u128) -> u128 {
        let doublings = (hi / lo).max(1).ilog2();
        let base = lo << self.rng.random_range(0..=doublings);
        let x = base + self.rng.random_range(0..base);
        x.clamp(lo, hi)
    }

    fn random_tx(&mut self, max_fee: u128) -> DemoTx {
        // Weights loosely follow mainnet DeFi: token transfers and swaps dominate.
        const WEIGHTS: [(TxKindLabel, u32); 17] = [
            (TxKindLabel::TokenTransfer, 22),
            (TxKindLabel::TokenApprove, 6),
            (TxKindLabel::TokenTransferFrom, 4),
            (TxKindLabel::EtherTransfer, 6),
            (TxKindLabel::WethDeposit, 5),
            (TxKindLabel::WethWithdraw, 4),
            (TxKindLabel::AmmSwap, 10),
            (TxKindLabel::AmmMultiHop, 6),
            (TxKindLabel::AmmEthIn, 3),
            (TxKindLabel::AmmEthOut, 2),
            (TxKindLabel::PoolSwap, 12),
            (TxKindLabel::PoolMultiHop, 3),
            (TxKindLabel::PoolMint, 2),
            (TxKindLabel::PoolBurn, 1),
            (TxKindLabel::NftMint, 4),
            (TxKindLabel::NftTransfer, 3),
            (TxKindLabel::Compute, 5),
        ];
        let total: u32 = WEIGHTS.iter().map(|w| w.1).sum();
        let mut pick = self.rng.random_range(0..total);
        let mut kind = TxKindLabel::TokenTransfer;
        for (k, w) in WEIGHTS {
            if pick < w {
                kind = k;
                break;
            }
            pick -= w;
        }
        match kind {
            TxKindLabel::TokenApprove => self.token_approve(max_fee),
            TxKindLabel::TokenTransferFrom => self.token_transfer_from(max_fee),
            TxKindLabel::EtherTransfer => self.ether_transfer(max_fee),
            TxKindLabel::WethDeposit => self.weth_deposit(max_fee),
            TxKindLabel::WethWithdraw => self.weth_withdraw(max_fee),
            TxKindLabel::AmmSwap => self.amm_swap(max_fee, 1),
            TxKindLabel::AmmMultiHop => {
                let hops = self.rng.random_range(2..=3);
                self.amm_swap(max_fee, hops)
            }
            TxKindLabel::AmmEthIn => self.amm_eth_in(max_fee),
            TxKindLabel::AmmEthOut => self.amm_eth_out(max_fee),
            TxKindLabel::PoolSwap => self.pool_swap(max_fee),
            TxKindLabel::PoolMultiHop => self.pool_multi_hop(max_fee),
            TxKindLabel::PoolMint => self.pool_mint(max_fee),
            TxKindLabel::PoolBurn => self.pool_burn(max_fee),
            TxKindLabel::NftMint => self.nft_mint(max_fee),
            TxKindLabel::NftTransfer => self.nft_transfer(max_fee),
            TxKindLabel::Compute => self.compute(max_fee),
            _ => self.token_transfer(max_fee),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        from: usize,
        to: Address,
        value: u128,
        input: Vec<u8>,
        kind: TxKindLabel,
        what: String,
        max_fee: u128,
    ) -> DemoTx {
        self.sign(
            from,
            TxKind::Call(to),
            value,
            input,
            kind,
            what,
            max_fee,
            kind.gas_limit(),
        )
    }

    fn token_transfer(&mut self, max_fee: u128) -> DemoTx {
        let from = self.user();
        let to = self.other_user(from);
        let t = self.rng.random_range(0..4);
        let amount = self.amount(ETHER / 1000, 10_000 * ETHER);
        let input = IDemoToken::transferCall {
            to: self.accounts[to].address,
            amount: U256::from(amount),
        }
        .abi_encode();
        let token = self.deployment.tokens[t];
        let what = format!("{}.transfer", TOKEN_NAMES[t].2);
        self.call(
            from,
            token,
            0,
            input,
            TxKindLabel::TokenTransfer,
            what,
            max_fee,
        )
    }

    fn token_approve(&mut self, max_fee: u128) -> DemoTx {
        let owner = self.user();
        let spender = self.other_user(owner);
        let t = self.rng.random_range(0..4);
        let amount = self.amount(ETHER, 100_000 * ETHER);
        self.allowances.insert((t, owner, spender), amount);
        let input = IDemoToken::approveCall {
            spender: self.accounts[spender].address,
            amount: U256::from(amount),
        }
        .abi_encode();
        let token = self.deployment.tokens[t];
        let what = format!("{}.approve", TOKEN_NAMES[t].2);
        self.call(
            owner,
            token,
            0,
            input,
            TxKindLabel::TokenApprove,
            what,
            max_fee,
        )
    }

    fn token_transfer_from(&mut self, max_fee: u128) -> DemoTx {
        let open: Vec<((usize, usize, usize), u128)> = self
            .allowances
            .iter()
            .filter(|(_, &v)| v > 0)
            .map(|(k, v)| (*k, *v))
            .collect();
        if open.is_empty() {
            return self.token_transfer(max_fee);
        }
        let ((t, owner, spender), left) = open[self.rng.random_range(0..open.len())];
        let amount = if self.rng.random_bool(0.3) {
            left
        } else {
            self.rng.random_range(1..=left)
        };
        self.allowances.insert((t, owner, spender), left - amount);
        let to = self.user();
        let input = IDemoToken::transferFromCall {
            from: self.accounts[owner].address,
            to: self.accounts[to].address,
            amount: U256::from(amount),
        }
        .abi_encode();
        let token = self.deployment.tokens[t];
        let what = format!("{}.transferFrom", TOKEN_NAMES[t].2);
        self.call(
            spender,
            token,
            0,
            input,
            TxKindLabel::TokenTransferFrom,
            what,
            max_fee,
        )
    }

    fn ether_transfer(&mut self, max_fee: u128) -> DemoTx {
        let from = self.user();
        let to = self.other_user(from);
        let amount = self.amount(ETHER / 10_000, ETHER);
        let to = self.accounts[to].address;
        let what = "ether transfer".to_string();
        self.call(
            from,
            to,
            amount,
            vec![],
            TxKindLabel::EtherTransfer,
            what,
            max_fee,
        )
    }

    fn weth_deposit(&mut self, max_fee: u128) -> DemoTx {
        let from = self.user();
        let amount = self.amount(ETHER / 100, 10 * ETHER);
        self.weth[from] += amount;
        let input = IWrappedEther::depositCall {}.abi_encode();
        let weth = self.deployment.weth;
        let what = "WrappedEther.deposit".to_string();
        self.call(
            from,
            weth,
            amount,
            input,
            TxKindLabel::WethDeposit,
            what,
            max_fee,
        )
    }

    fn weth_withdraw(&mut self, max_fee: u128) -> DemoTx {
        let from = self.user();
        let held = self.weth[from];
        if held < ETHER / 100 {
            return self.weth_deposit(max_fee);
        }
        let amount = self.amount(ETHER / 100, held.min(10 * ETHER));
        self.weth[from] -= amount;
        let input = IWrappedEther::withdrawCall {
            amount: U256::from(amount),
        }
        .abi_encode();
        let weth = self.deployment.weth;
        let what = "WrappedEther.withdraw".to_string();
        self.call(
            from,
            weth,
            0,
            input,
            TxKindLabel::WethWithdraw,
            what,
            max_fee,
        )
    }

    /// Token indices (4 = WETH) adjacent to `t` in the pair graph.
    fn pair_neighbours(t: usize) -> Vec<usize> {
        PAIRS
            .iter()
            .filter_map(|&(a, b, _)| {
                if a == t {
                    Some(b)
                } else if b == t {
                    Some(a)
                } else {
                    None
                }
            })
            .collect()
    }

    /// A path of `hops` pairs without repeated tokens, starting at `start`.
    fn pair_path(&mut self, start: usize, hops: usize, end_weth: bool) -> Option<Vec<usize>> {
        for _ in 0..16 {
            let mut path = vec![start];
            while path.len() <= hops {
                let last = *path.last().expect("non-empty");
                let next: Vec<usize> = Self::pair_neighbours(last)
                    .into_iter()
                    .filter(|n| !path.contains(n))
                    .filter(|&n| {
                        if path.len() == hops && end_weth {
                            n == 4
                        } else {
                            n != 4
                        }
                    })
                    .collect();
                if next.is_empty() {
                    break;
                }
                path.push(next[self.rng.random_range(0..next.len())]);
            }
            if path.len() == hops + 1 {
                return Some(path);
            }
        }
        None
    }

    fn token_address(&self, t: usize) -> Address {
        if t == 4 {
            self.deployment.weth
        } else {
            self.deployment.tokens[t]
        }
    }

    fn path_name(path: &[usize]) -> String {
        path.iter()
            .map(|&t| ["A", "B", "C", "D", "WETH"][t])
            .collect::<Vec<_>>()
            .join(">")
    }

    fn amm_swap(&mut self, max_fee: u128, hops: usize) -> DemoTx {
        let from = self.user();
        let start = self.rng.random_range(0..4);
        let Some(path) = self.pair_path(start, hops, false) else {
            return self.token_transfer(max_fee);
        };
        let amount = self.amount(ETHER / 10, 20_000 * ETHER);
        let kind = if hops == 1 {
            TxKindLabel::AmmSwap
        } else {
            TxKindLabel::AmmMultiHop
        };
        let input = IPairRouter::swapExactTokensForTokensCall {
            amountIn: U256::from(amount),
            minOut: U256::from(1),
            path: path.iter().map(|&t| self.token_address(t)).collect(),
            to: self.accounts[from].address,
            deadline: U256::MAX,
        }
        .abi_encode();
        let router = self.deployment.pair_router;
        let what = format!(
            "PairRouter.swapExactTokensForTokens({})",
            Self::path_name(&path)
        );
        self.call(from, router, 0, input, kind, what, max_fee)
    }

    fn amm_eth_in(&mut self, max_fee: u128) -> DemoTx {
        let from = self.user();
        let hops = self.rng.random_range(1..=2);
        let Some(path) = self.pair_path(4, hops, false) else {
            return self.weth_deposit(max_fee);
        };
        let amount = self.amount(ETHER / 100, 20 * ETHER);
        let input = IPairRouter::swapExactETHForTokensCall {
            minOut: U256::from(1),
            path: path.iter().map(|&t| self.token_address(t)).collect(),
            to: self.accounts[from].address,
            deadline: U256::MAX,
        }
        .abi_encode();
        let router = self.deployment.pair_router;
        let what = format!(
            "PairRouter.swapExactETHForTokens({})",
            Self::path_name(&path)
        );
        self.call(
            from,
            router,
            amount,
            input,
            TxKindLabel::AmmEthIn,
            what,
            max_fee,
        )
    }

    fn amm_eth_out(&mut self, max_fee: u128) -> DemoTx {
        let from = self.user();
        let hops = self.rng.random_range(1..=2);
        let start = self.rng.random_range(0..4);
        let path = match self.pair_path(start, hops, true) {
            Some(path) => path,
            None => {
                let start = [0, 2][self.rng.random_range(0..2)];
                self.pair_path(start, 1, true)
                    .expect("A and C have WETH pairs")
            }
        };
        let amount = self.amount(ETHER / 10, 10_000 * ETHER);
        let input = IPairRouter::swapExactTokensForETHCall {
            amountIn: U256::from(amount),
            minOut: U256::from(1),
            path: path.iter().map(|&t| self.token_address(t)).collect(),
            to: self.accounts[from].address,
            deadline: U256::MAX,
        }
        .abi_encode();
        let router = self.deployment.pair_router;
        let what = format!(
            "PairRouter.swapExactTokensForETH({})",
            Self::path_name(&path)
        );
        self.call(
            from,
            router,
            0,
            input,
            TxKindLabel::AmmEthOut,
            what,
            max_fee,
        )
    }

    /// Swap direction for a pool: random, but pushed back once the pool has drifted far.
    fn pool_direction(&mut self, pool: usize) -> bool {
        let drift = self.pool_drift[pool];
        let limit = POOL_DRIFT_LIMIT * self.deployment.pools[pool].spacing as i128 / 60;
        // Percent chance of selling token0: 50 at no drift, 10 or 90 at the limit and beyond.
        let push = (drift.clamp(-limit, limit) * 40 / limit) as i32;
        self.rng.random_range(0..100) < 50 - push
    }

    fn record_drift(&mut self, pool: usize, zero_for_one: bool, amount: u128) {
        let a = amount as i128;
        self.pool_drift[pool] += if zero_for_one { a } else { -a };
    }

    fn pool_swap(&mut self, max_fee: u128) -> DemoTx {
        let from = self.user();
        let p = if self.rng.random_range(0..100) < TAIL_SWAP_PERCENT {
            self.rng.random_range(HOT_POOLS..POOLS.len())
        } else {
            self.rng.random_range(0..HOT_POOLS)
        };
        let pool = self.deployment.pools[p];
        let zero_for_one = self.pool_direction(p);
        let scale = pool.spacing as u128;
        let amount = self.amount(scale * ETHER, scale * 300 * ETHER);
        self.record_drift(p, zero_for_one, amount);
        let (token_in, token_out) = if zero_for_one {
            (pool.token0, pool.token1)
        } else {
            (pool.token1, pool.token0)
        };
        let input = ITickRouter::exactInputSingleCall {
            tokenIn: token_in,
            tokenOut: token_out,
            fee: u24(pool.fee),
            amountIn: U256::from(amount),
            minOut: U256::from(1),
            to: self.accounts[from].address,
            deadline: U256::MAX,
        }
        .abi_encode();
        let router = self.deployment.pool_router;
        let dir = if zero_for_one { "0>1" } else { "1>0" };
        let what = format!("TickRouter.exactInputSingle({} {dir})", pool.label);
        self.call(from, router, 0, input, TxKindLabel::PoolSwap, what, max_fee)
    }

    fn pool_multi_hop(&mut self, max_fee: u128) -> DemoTx {
        // Two-pool routes: (first pool, token in, middle token, second pool, token out).
        const ROUTES: [(usize, usize, usize, usize, usize); 4] = [
            (0, 0, 1, 1, 2),
            (1, 2, 1, 0, 0),
            (3, 0, 2, 4, 3),
            (2, 3, 0, 3, 2),
        ];
        let from = self.user();
        let (p1, t_in, t_mid, p2, t_out) = ROUTES[self.rng.random_range(0..ROUTES.len())];
        let pools = &self.deployment.pools;
        let scale = pools[p1].spacing.min(pools[p2].spacing) as u128;
        let amount = self.amount(scale * ETHER, scale * 200 * ETHER);
        let tokens = self.deployment.tokens;
        let (a, m, b) = (tokens[t_in], tokens[t_mid], tokens[t_out]);
        self.record_drift(p1, a < m, amount);
        self.record_drift(p2, m < b, amount);
        let pools = &self.deployment.pools;
        let fees = vec![u24(pools[p1].fee), u24(pools[p2].fee)];
        let what = format!(
            "TickRouter.exactInput({} {}>{}>{} via {} and {})",
            amount / ETHER,
            Self::path_name(&[t_in]),
            Self::path_name(&[t_mid]),
            Self::path_name(&[t_out]),
            pools[p1].label,
            pools[p2].label
        );
        let input = ITickRouter::exactInputCall {
            tokens: vec![a, m, b],
            fees,
            amountIn: U256::from(amount),
            minOut: U256::from(1),
            to: self.accounts[from].address,
            deadline: U256::MAX,
        }
        .abi_encode();
        let router = self.deployment.pool_router;
        self.call(
            from,
            router,
            0,
            input,
            TxKindLabel::PoolMultiHop,
            what,
            max_fee,
        )
    }

    fn pool_mint(&mut self, max_fee: u128) -> DemoTx {
        let from = self.user();
        let p = self.rng.random_range(0..HOT_POOLS);
        let pool = self.deployment.pools[p];
        let s = pool.spacing;
        let lower = self.rng.random_range(-40..=30) * s;
        let upper = lower + self.rng.random_range(1..=10) * s;
        self.user_positions.push(UserPosition {
            owner: from,
            pool: p,
            lower,
            upper,
        });
        let input = ITickRouter::addPositionCall {
            tokenA: pool.token0,
            tokenB: pool.token1,
            fee: u24(pool.fee),
            lower: i24(lower),
            upper: i24(upper),
            amount: USER_POSITION_LIQUIDITY,
            deadline: U256::MAX,
        }
        .abi_encode();
        let router = self.deployment.pool_router;
        let what = format!("TickRouter.addPosition({} [{lower}, {upper}))", pool.label);
        self.call(from, router, 0, input, TxKindLabel::PoolMint, what, max_fee)
    }

    fn pool_burn(&mut self, max_fee: u128) -> DemoTx {
        if self.user_positions.is_empty() {
            return self.pool_mint(max_fee);
        }
        let i = self.rng.random_range(0..self.user_positions.len());
        let pos = self.user_positions.swap_remove(i);
        let pool = self.deployment.pools[pos.pool];
        let input = ITickPool::burnCall {
            lower: i24(pos.lower),
            upper: i24(pos.upper),
            amount: USER_POSITION_LIQUIDITY,
        }
        .abi_encode();
        let what = format!("{}.burn([{}, {}))", pool.label, pos.lower, pos.upper);
        self.call(
            pos.owner,
            pool.address,
            0,
            input,
            TxKindLabel::PoolBurn,
            what,
            max_fee,
        )
    }

    fn nft_mint(&mut self, max_fee: u128) -> DemoTx {
        let from = self.user();
        let to = if self.rng.random_bool(0.8) {
            from
        } else {
            self.other_user(from)
        };
        self.nft_owners.push(to);
        let input = ICollectible::mintCall {
            to: self.accounts[to].address,
        }
        .abi_encode();
        let nft = self.deployment.nft;
        let what = "Collectible.mint".to_string();
        self.call(from, nft, 0, input, TxKindLabel::NftMint, what, max_fee)
    }

    fn nft_transfer(&mut self, max_fee: u128) -> DemoTx {
        if self.nft_owners.is_empty() {
            return self.nft_mint(max_fee);
        }
        let index = self.rng.random_range(0..self.nft_owners.len());
        let owner = self.nft_owners[index];
        let to = self.other_user(owner);
        self.nft_owners[index] = to;
        let (from_addr, to_addr) = (self.accounts[owner].address, self.accounts[to].address);
        let id = U256::from(index + 1);
        let (input, call) = if self.rng.random_bool(0.5) {
            (
                ICollectible::transferFromCall {
                    from: from_addr,
                    to: to_addr,
                    id,
                }
                .abi_encode(),
                "transferFrom",
            )
        } else {
            (
                ICollectible::safeTransferFromCall {
                    from: from_addr,
                    to: to_addr,
                    id,
                }
                .abi_encode(),
                "safeTransferFrom",
            )
        };
        let nft = self.deployment.nft;
        let what = format!("Collectible.{call}(#{})", index + 1);
        self.call(
            owner,
            nft,
            0,
            input,
            TxKindLabel::NftTransfer,
            what,
            max_fee,
        )
    }

    fn compute(&mut self, max_fee: u128) -> DemoTx {
        let from = self.user();
        let (input, what) = match self.rng.random_range(0..3) {
            0 => {
                let rounds = self.rng.random_range(50..=2000u64);
                let seed = B256::from(self.rng.random::<[u8; 32]>());
                (
                    IWorkbench::hashChainCall {
                        seed,
                        rounds: U256::from(rounds),
                    }
                    .abi_encode(),
                    format!("Workbench.hashChain({rounds})"),
                )
            }
            1 => {
                let limit = self.rng.random_range(200..=3000u64);
                (
                    IWorkbench::sieveCall {
                        limit: U256::from(limit),
                    }
                    .abi_encode(),
                    format!("Workbench.sieve({limit})"),
                )
            }
            _ => {
                let start = self.rng.random_range(1..=1_000_000u64);
                let n = self.rng.random_range(5..=40u64);
                (
                    IWorkbench::rootSumCall {
                        from: U256::from(start),
                        n: U256::from(n),
                    }
                    .abi_encode(),
                    format!("Workbench.rootSum({start}, {n})"),
                )
            }
        };
        let workbench = self.deployment.workbench;
        self.call(
            from,
            workbench,
            0,
            input,
            TxKindLabel::Compute,
            what,
            max_fee,
        )
    }
}
