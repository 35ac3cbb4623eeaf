//! The chains kiln's node runs: every fork up to Cancun active from genesis (the fixtures' chain,
//! chain id 1, and geth-format genesis files with that schedule).

use alloy_eips::eip6110::MAINNET_DEPOSIT_CONTRACT_ADDRESS;
use alloy_evm::eth::spec::EthExecutorSpec;
use alloy_hardforks::{EthereumChainHardforks, EthereumHardfork, EthereumHardforks, ForkCondition};
use alloy_primitives::Address;

/// The chain id the fixtures are signed for.
pub const CHAIN_ID: u64 = 1;

/// Hardforks up to Cancun, all active at genesis (no DAO fork, no block rewards after Paris).
#[derive(Clone, Debug)]
pub struct CancunSpec {
    hardforks: EthereumChainHardforks,
    chain_id: u64,
}

impl Default for CancunSpec {
    fn default() -> Self {
        Self::new(CHAIN_ID)
    }
}

/// A genesis file's fork schedule that kiln's node does not run.
#[derive(Debug, thiserror::Error)]
#[error("unsupported fork schedule: {0} (kiln's node runs chains with every fork up to Cancun active from genesis, and no later fork)")]
pub struct UnsupportedSchedule(pub String);

impl CancunSpec {
    /// The chain id transactions are signed for.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// A geth-format genesis config's schedule, if it is the one kiln runs: Paris, Shanghai and
    /// Cancun at genesis, nothing after.
    pub fn from_genesis(config: &alloy_genesis::ChainConfig) -> Result<Self, UnsupportedSchedule> {
        let at_genesis = |name: &str, block: Option<u64>| match block {
            Some(0) => Ok(()),
            other => Err(UnsupportedSchedule(format!("{name} at {other:?}, not 0"))),
        };
        at_genesis("londonBlock", config.london_block)?;
        at_genesis("shanghaiTime", config.shanghai_time)?;
        at_genesis("cancunTime", config.cancun_time)?;
        if config
            .terminal_total_difficulty
            .is_some_and(|ttd| !ttd.is_zero())
        {
            return Err(UnsupportedSchedule(
                "terminalTotalDifficulty is not 0 (proof-of-work blocks)".into(),
            ));
        }
        if let Some(time) = config.prague_time.or(config.osaka_time) {
            return Err(UnsupportedSchedule(format!(
                "a fork after Cancun is scheduled (at time {time})"
            )));
        }
        Ok(Self::new(config.chain_id))
    }

    /// Cancun from genesis on chain `chain_id`.
    pub fn new(chain_id: u64) -> Self {
        use EthereumHardfork as H;
        let by_block = [
            H::Frontier,
            H::Homestead,
            H::Tangerine,
            H::SpuriousDragon,
            H::Byzantium,
            H::Constantinople,
            H::Petersburg,
            H::Istanbul,
            H::MuirGlacier,
            H::Berlin,
            H::London,
            H::ArrowGlacier,
            H::GrayGlacier,
            H::Paris,
        ]
        .map(|fork| (fork, ForkCondition::Block(0)));
        let by_time = [H::Shanghai, H::Cancun].map(|fork| (fork, ForkCondition::Timestamp(0)));
        Self {
            hardforks: EthereumChainHardforks::new(by_block.into_iter().chain(by_time)),
            chain_id,
        }
    }
}

impl EthereumHardforks for CancunSpec {
    fn ethereum_fork_activation(&self, fork: EthereumHardfork) -> ForkCondition {
        self.hardforks.ethereum_fork_activation(fork)
    }
}

impl EthExecutorSpec for CancunSpec {
    fn deposit_contract_address(&self) -> Option<Address> {
        Some(MAINNET_DEPOSIT_CONTRACT_ADDRESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use revm::primitives::hardfork::SpecId;

    #[test]
    fn cancun_from_genesis() {
        let spec = CancunSpec::default();
        assert_eq!(
            alloy_evm::spec_by_timestamp_and_block_number(&spec, 0, 0),
            SpecId::CANCUN
        );
        assert!(!spec.is_prague_active_at_timestamp(u64::MAX));
        assert!(spec.is_paris_active_at_block(0));
    }
}
