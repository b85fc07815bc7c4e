export { freePort, MOSQUITTO_BIN, type Mosquitto, type MosquittoOptions, mosquittoMissing, startMosquitto } from './mosquitto.ts';
export { NATS_BIN, type NatsCluster, type NatsNode, type NatsUser, natsMissing, startNatsCluster } from './nats.ts';
