pub struct KilnEvmFactory; pub struct KilnAlloyEvm;
