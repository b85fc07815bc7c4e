export { freePort, MOSQUITTO_BIN, type Mosquitto, type MosquittoOptions, mosquittoMissing, startMosquitto } from './mosquitto.ts';
